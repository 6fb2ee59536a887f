from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TasksAppConfig(AppConfig):
    name = "tasks_app"
    verbose_name = _("Tasks")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Importing the modules connects their signal handlers: publishing a task records it
        # (recording), and workers keep healthy database connections between tasks (connections).
        from tasks_app import connections, recording  # noqa: F401
