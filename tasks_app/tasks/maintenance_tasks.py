"""Housekeeping tasks (queue `default`)."""

import socket
from dataclasses import asdict
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from conversations.admission import sweep_waiting_replies
from conversations.knowledge import knowledge_reindex_stale
from monitoring.counters import fold_increments
from monitoring.fold import fold_rollup
from monitoring.retention import prune_rollup
from tasks_app import lifeline, maintenance


@shared_task(bind=True, name="tasks_app.tasks.maintenance_tasks.health_check")
def health_check(self) -> dict:
    """Prove a queue is served end to end: broker, worker, result backend."""
    return {
        "worker": self.request.hostname or socket.gethostname(),
        "queue": (self.request.delivery_info or {}).get("routing_key"),
        "at": timezone.now().isoformat(),
    }


@shared_task(bind=True, name="tasks_app.tasks.maintenance_tasks.cleanup_finished_tasks")
def cleanup_finished_tasks(self, older_than_days: float | None = None, batch_size: int | None = None) -> dict:
    """Delete finished task records and their results older than TASK_CLEANUP_AFTER_DAYS, in batches.

    Runs for at most TASK_CLEANUP_TIME_BUDGET seconds, then queues itself again for the rest,
    so one run never holds a worker slot (or a transaction) for long.
    """
    days = settings.TASK_CLEANUP_AFTER_DAYS if older_than_days is None else older_than_days
    size = batch_size or settings.TASK_CLEANUP_BATCH_SIZE
    report = maintenance.delete_finished_tasks(
        older_than=timedelta(days=days), batch_size=size, time_budget=settings.TASK_CLEANUP_TIME_BUDGET
    )
    if report.more:
        self.apply_async(kwargs={"older_than_days": days, "batch_size": size})
    return asdict(report)


@shared_task(name="tasks_app.tasks.maintenance_tasks.fold_metrics")
def fold_metrics() -> dict:
    """Fold what was counted and finished since the last fold, every FOLD_EVERY_SECONDS: the
    triggers' increments into the metric counters (monitoring.counters), the task records and
    replies into the dashboard's rollup (monitoring.fold, a minute or two of work)."""
    series = fold_increments()
    report = fold_rollup()
    return {
        "counter_series": series,
        "rollup_start": report.start.isoformat(),
        "minute_rows": report.minute_rows,
        "hour_rows": report.hour_rows,
    }


@shared_task(bind=True, name="tasks_app.tasks.maintenance_tasks.prune_dashboard_rollup")
def prune_dashboard_rollup(self) -> dict:
    """Delete the dashboard rollup's bins past their keeping time (monitoring.retention), in batches;
    queues itself again when its time budget runs out first."""
    report = prune_rollup(batch_size=settings.TASK_CLEANUP_BATCH_SIZE, time_budget=settings.TASK_CLEANUP_TIME_BUDGET)
    if report.more:
        self.apply_async()
    return asdict(report)


@shared_task(name="tasks_app.tasks.maintenance_tasks.resend_lost_tasks")
def resend_lost_tasks(pending_for_seconds: float | None = None) -> dict:
    """Re-send tasks stuck PENDING whose message the broker lost (see tasks_app.maintenance)."""
    seconds = settings.TASK_LOST_AFTER_SECONDS if pending_for_seconds is None else pending_for_seconds
    return asdict(maintenance.resend_lost_tasks(pending_for=timedelta(seconds=seconds)))


@shared_task(name="tasks_app.tasks.maintenance_tasks.rescue_orphaned_tasks")
def rescue_orphaned_tasks(grace_seconds: float | None = None) -> dict:
    """Hand the unacknowledged messages of dead worker nodes back to their queues (tasks_app.lifeline)."""
    grace = settings.TASK_RESCUE_GRACE_SECONDS if grace_seconds is None else grace_seconds
    return asdict(lifeline.rescue_orphaned_tasks(grace_seconds=grace))


@shared_task(name="tasks_app.tasks.maintenance_tasks.release_waiting_replies")
def release_waiting_replies() -> dict:
    """Send the AI replies whose turn came without anyone noticing (conversations.admission's safety net)."""
    return {"sent": sweep_waiting_replies()}


@shared_task(name="tasks_app.tasks.maintenance_tasks.reindex_stale_documents")
def reindex_stale_documents(stale_for_seconds: float | None = None, limit: int = 500) -> dict:
    """Queue indexing of knowledge documents left stale (never indexed, or changed since)."""
    seconds = settings.KNOWLEDGE_REINDEX_STALE_AFTER_SECONDS if stale_for_seconds is None else stale_for_seconds
    return {"queued": knowledge_reindex_stale(older_than=timedelta(seconds=seconds), limit=limit)}
