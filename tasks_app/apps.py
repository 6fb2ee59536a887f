from django.apps import AppConfig


class TasksAppConfig(AppConfig):
    name = "tasks_app"
    verbose_name = "Tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Publishing a task records it; importing the module connects the signal handler.
        from tasks_app import recording  # noqa: F401
