"""The system's periodic jobs, defined in code and created in django-celery-beat's tables.

They are created after every `migrate` (a post_migrate handler, tasks_app.apps), so a deploy
that only migrates has them; `manage.py setup_periodic_tasks` does the same on demand. Only a
job that does not exist yet is created, by name. An existing job is never changed or
re-enabled: once created, a job belongs to the operators, who edit, disable or run it in the
admin (Periodic tasks), and beat picks the change up without a restart. A job an operator
deleted is remembered (DeletedPeriodicJob) and not created again, unless asked
(`setup_periodic_tasks --restore-deleted`). One beat sends them (claw_ai.beat holds a lease).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from django.conf import settings
from django.db import IntegrityError, transaction
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from monitoring.fold import FOLD_EVERY_SECONDS
from tasks_app.models import DeletedPeriodicJob


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    task: str
    description: str
    every_seconds: int | None = None
    crontab: str | None = None  # "minute hour day_of_month month_of_year day_of_week"
    kwargs: dict = field(default_factory=dict)
    # A run not started within this many seconds is dropped (the next one does its work): while the
    # workers are down, a frequent job's runs would otherwise pile up in the queue.
    expire_seconds: int | None = None


# Without these two jobs, tasks of a dead worker node or lost by the broker wait for ever:
# beat warns at start when one is disabled or missing, and /stats lists them.
RESEND_JOB_NAME = "tasks: re-send lost tasks"
LIFELINE_JOB_NAME = "tasks: rescue tasks of dead workers"
SAFETY_JOB_NAMES = (LIFELINE_JOB_NAME, RESEND_JOB_NAME)


PERIODIC_JOBS: tuple[PeriodicJob, ...] = (
    PeriodicJob(
        name="tasks: clean up finished tasks",
        task="tasks_app.tasks.maintenance_tasks.cleanup_finished_tasks",
        description="Deletes finished task records and results older than TASK_CLEANUP_AFTER_DAYS, in batches.",
        crontab="30 3 * * *",
    ),
    PeriodicJob(
        name=RESEND_JOB_NAME,
        task="tasks_app.tasks.maintenance_tasks.resend_lost_tasks",
        description="Re-sends tasks PENDING past TASK_LOST_AFTER_SECONDS that no worker holds and the broker lost.",
        every_seconds=300,
    ),
    PeriodicJob(
        name=LIFELINE_JOB_NAME,
        task="tasks_app.tasks.maintenance_tasks.rescue_orphaned_tasks",
        description="Hands unacknowledged messages no live worker holds back to their queues.",
        every_seconds=120,
    ),
    PeriodicJob(
        name="replies: send replies whose turn came",
        task="tasks_app.tasks.maintenance_tasks.release_waiting_replies",
        description="Sends AI replies waiting in PostgreSQL whose place came free without a reply ending "
        "(e.g. cancelled before it ran).",
        every_seconds=60,
    ),
    PeriodicJob(
        name="knowledge: re-index stale documents",
        task="tasks_app.tasks.maintenance_tasks.reindex_stale_documents",
        description="Queues indexing of knowledge documents never indexed or changed since their last indexing.",
        every_seconds=900,
    ),
    PeriodicJob(
        name="monitoring: fold the metric counts and the dashboard's time bins",
        task="tasks_app.tasks.maintenance_tasks.fold_metrics",
        description="Moves the counting triggers' increments into the /metrics counters, and recomputes the admin "
        "dashboard's recent minute and hour bins from the task records and replies finished since the last fold "
        "(the dashboard also folds before it draws; a scrape adds the increments not folded yet).",
        every_seconds=FOLD_EVERY_SECONDS,
        expire_seconds=FOLD_EVERY_SECONDS,
    ),
    PeriodicJob(
        name="monitoring: prune the dashboard's old time bins",
        task="tasks_app.tasks.maintenance_tasks.prune_dashboard_rollup",
        description="Deletes the admin dashboard's minute bins older than METRICS_ROLLUP_MINUTE_BINS_DAYS and hour "
        "bins older than METRICS_ROLLUP_HOUR_BINS_DAYS.",
        crontab="45 3 * * *",
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


def ensure_periodic_tasks(
    jobs: tuple[PeriodicJob, ...] = PERIODIC_JOBS, *, restore_deleted: bool = False
) -> dict[str, str]:
    """Create each job missing from the database; leave existing ones as operators left them.

    A job an operator deleted stays deleted unless `restore_deleted`.
    Returns {job name: "created" | "exists" | "deleted by an operator"}.
    """
    if restore_deleted:
        DeletedPeriodicJob.objects.filter(name__in=[job.name for job in jobs]).delete()
    deleted = set(DeletedPeriodicJob.objects.values_list("name", flat=True))
    outcome: dict[str, str] = {}
    for job in jobs:
        if job.name in deleted:
            outcome[job.name] = "deleted by an operator"
            continue
        if PeriodicTask.objects.filter(name=job.name).exists():
            outcome[job.name] = "exists"
            continue
        try:
            with transaction.atomic():
                PeriodicTask.objects.create(
                    name=job.name,
                    task=job.task,
                    kwargs=json.dumps(job.kwargs),
                    description=job.description,
                    expire_seconds=job.expire_seconds,
                    **_schedule_for(job),
                )
            outcome[job.name] = "created"
        except IntegrityError:  # another process created it at the same moment
            outcome[job.name] = "exists"
    return outcome


def remember_deleted_job(*, name: str) -> None:
    """Mark a system job as deleted by an operator (PeriodicTask post_delete), so it stays deleted."""
    if name in {job.name for job in PERIODIC_JOBS}:
        DeletedPeriodicJob.objects.get_or_create(name=name)


def safety_jobs_off() -> list[str]:
    """The names of the lifeline and re-send jobs that are disabled or deleted (they should run)."""
    enabled = set(PeriodicTask.objects.filter(name__in=SAFETY_JOB_NAMES, enabled=True).values_list("name", flat=True))
    return [name for name in SAFETY_JOB_NAMES if name not in enabled]
