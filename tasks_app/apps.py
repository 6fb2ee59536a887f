from django.apps import AppConfig
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models.signals import post_delete, post_migrate
from django.utils.translation import gettext_lazy as _


class TasksAppConfig(AppConfig):
    name = "tasks_app"
    verbose_name = _("Tasks")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Importing the modules connects their signal handlers: publishing a task records it
        # (recording), and workers keep healthy database connections between tasks (connections).
        from django_celery_beat.models import PeriodicTask

        from tasks_app import connections as _connections  # noqa: F401
        from tasks_app import liveness, recording  # noqa: F401  (liveness: worker heartbeats)

        # The system's periodic jobs exist after `migrate` alone: a deploy that skips
        # setup_periodic_tasks still has its lifeline and re-send jobs.
        post_migrate.connect(create_periodic_jobs, sender=self, dispatch_uid="tasks_app.create_periodic_jobs")
        post_delete.connect(forget_deleted_job, sender=PeriodicTask, dispatch_uid="tasks_app.forget_deleted_job")


def create_periodic_jobs(*, using: str = DEFAULT_DB_ALIAS, verbosity: int = 1, **_kwargs) -> None:
    from django_celery_beat.models import PeriodicTask

    from tasks_app.models import DeletedPeriodicJob
    from tasks_app.schedules import ensure_periodic_tasks

    # `migrate` of one app to an early state may leave the tables out: nothing to do then.
    tables = set(connections[using].introspection.table_names())
    if using != DEFAULT_DB_ALIAS or not {PeriodicTask._meta.db_table, DeletedPeriodicJob._meta.db_table} <= tables:
        return
    for name, outcome in ensure_periodic_tasks().items():
        if outcome == "created" and verbosity >= 1:
            print(f"  Created periodic job {name!r}")  # noqa: T201 (beside migrate's own output, as it prints)


def forget_deleted_job(*, instance, **_kwargs) -> None:
    from tasks_app.schedules import remember_deleted_job

    remember_deleted_job(name=instance.name)
