"""Create the system's periodic jobs in django-celery-beat (`migrate` does it too, after every run).

Only missing jobs are created; a job an operator edited or disabled in the admin is left as it is,
and one an operator deleted stays deleted unless --restore-deleted.
"""

from django.core.management.base import BaseCommand

from tasks_app.schedules import ensure_periodic_tasks


class Command(BaseCommand):
    help = (
        "Create the periodic jobs defined in tasks_app/schedules.py that do not exist yet (never overwrites; "
        "jobs an operator deleted stay deleted unless --restore-deleted)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--restore-deleted",
            action="store_true",
            help="Also create again the system jobs an operator deleted.",
        )

    def handle(self, *args, **options):
        for name, outcome in ensure_periodic_tasks(restore_deleted=options["restore_deleted"]).items():
            if outcome == "exists":
                shown = "exists, left as it is"
            elif outcome != "created":
                shown = f"{outcome} (--restore-deleted creates it again)"
            else:
                shown = outcome
            self.stdout.write(f"periodic job {name!r}: {shown}")
