"""Create the system's periodic jobs in django-celery-beat (run by `make run` and the compose entrypoint).

Only missing jobs are created; a job an operator edited or disabled in the admin is left as it is.
"""

from django.core.management.base import BaseCommand

from tasks_app.schedules import ensure_periodic_tasks


class Command(BaseCommand):
    help = "Create the periodic jobs defined in tasks_app/schedules.py that do not exist yet (never overwrites)."

    def handle(self, *args, **options):
        for name, created in ensure_periodic_tasks().items():
            self.stdout.write(f"periodic job {name!r}: {'created' if created else 'exists, left as it is'}")
