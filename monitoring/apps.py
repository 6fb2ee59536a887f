from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = _("Monitoring")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Importing the modules connects their signal receivers (tasks received by a worker, provider
        # calls; the request id put on published tasks).
        from monitoring import events, logs  # noqa: F401
