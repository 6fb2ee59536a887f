"""The system's periodic jobs, defined in code and created in django-celery-beat's tables.

`manage.py setup_periodic_tasks` (run by `make run` and the compose entrypoint)
creates each job that does not exist yet, by name. It never changes or re-enables
an existing job: once created, a job belongs to the operators, who edit, disable
or run it in the admin (Periodic tasks), and beat picks the change up without a
restart. To stop a job for good, disable it: a deleted job is created again on
the next deploy. Exactly one beat process must run (two would send every job twice).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from django.conf import settings
from django.db import IntegrityError, transaction
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    task: str
    description: str
    every_seconds: int | None = None
    crontab: str | None = None  # "minute hour day_of_month month_of_year day_of_week"
    kwargs: dict = field(default_factory=dict)


PERIODIC_JOBS: tuple[PeriodicJob, ...] = (
    PeriodicJob(
        name="tasks: clean up finished tasks",
        task="tasks_app.tasks.maintenance_tasks.cleanup_finished_tasks",
        description="Deletes finished task records and results older than TASK_CLEANUP_AFTER_DAYS, in batches.",
        crontab="30 3 * * *",
    ),
    PeriodicJob(
        name="tasks: re-send lost tasks",
        task="tasks_app.tasks.maintenance_tasks.resend_lost_tasks",
        description="Re-sends tasks PENDING past TASK_LOST_AFTER_SECONDS that no worker holds and the broker lost.",
        every_seconds=300,
    ),
    PeriodicJob(
        name="tasks: rescue tasks of dead workers",
        task="tasks_app.tasks.maintenance_tasks.rescue_orphaned_tasks",
        description="Hands unacknowledged messages no live worker holds back to their queues.",
        every_seconds=120,
    ),
    PeriodicJob(
        name="knowledge: re-index stale documents",
        task="tasks_app.tasks.maintenance_tasks.reindex_stale_documents",
        description="Queues indexing of knowledge documents never indexed or changed since their last indexing.",
        every_seconds=900,
    ),
)


def _schedule_for(job: PeriodicJob) -> dict:
    if job.every_seconds:
        interval = IntervalSchedule.objects.filter(every=job.every_seconds, period=IntervalSchedule.SECONDS).first()
        interval = interval or IntervalSchedule.objects.create(every=job.every_seconds, period=IntervalSchedule.SECONDS)
        return {"interval": interval}
    if job.crontab is None:
        raise ValueError(f"periodic job {job.name!r} has neither every_seconds nor crontab")
    minute, hour, day_of_month, month_of_year, day_of_week = job.crontab.split()
    fields = {
        "minute": minute,
        "hour": hour,
        "day_of_month": day_of_month,
        "month_of_year": month_of_year,
        "day_of_week": day_of_week,
        "timezone": settings.CELERY_TIMEZONE,
    }
    crontab = CrontabSchedule.objects.filter(**fields).first() or CrontabSchedule.objects.create(**fields)
    return {"crontab": crontab}


def ensure_periodic_tasks(jobs: tuple[PeriodicJob, ...] = PERIODIC_JOBS) -> dict[str, bool]:
    """Create each job missing from the database; leave existing ones as operators left them.

    Returns {job name: created?}.
    """
    created: dict[str, bool] = {}
    for job in jobs:
        if PeriodicTask.objects.filter(name=job.name).exists():
            created[job.name] = False
            continue
        try:
            with transaction.atomic():
                PeriodicTask.objects.create(
                    name=job.name,
                    task=job.task,
                    kwargs=json.dumps(job.kwargs),
                    description=job.description,
                    **_schedule_for(job),
                )
            created[job.name] = True
        except IntegrityError:  # another process created it at the same moment
            created[job.name] = False
    return created
