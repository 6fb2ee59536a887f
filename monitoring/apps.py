import os

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = _("Monitoring")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Importing the modules connects their signal receivers (tasks received by a worker, provider
        # calls; the request id put on published tasks).
        from monitoring import logs  # noqa: F401

        # MONITORING_EVENTS=off: bench/monitoring.py measures what counting these events costs.
        if os.environ.get("MONITORING_EVENTS", "on") != "off":
            from monitoring import events  # noqa: F401

        if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            # Optional tracing: without the variable, nothing of OpenTelemetry is imported.
            from monitoring import tracing

            tracing.configure()
