"""Housekeeping of the task tables: delete old finished tasks, re-send lost ones.

The periodic jobs in tasks_app.tasks.maintenance_tasks call these; tests call
them directly too.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from celery import states
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from django_celery_results.models import TaskResult

from claw_ai.celery import celery_app
from tasks_app import publishing, records
from tasks_app.lifeline import task_ids_held_by_live_workers
from tasks_app.models import FINISHED_STATES, WAITING_PREFIX, TaskRecord, TaskState

if TYPE_CHECKING:
    from datetime import timedelta

logger = logging.getLogger(__name__)

# A broker queue longer than this is not searched message by message: "cannot tell".
BROKER_SCAN_LIMIT = 20_000


# --- cleanup ------------------------------------------------------------------------------------
@dataclass
class CleanupReport:
    records_deleted: int = 0
    results_deleted: int = 0
    more: bool = False  # the time budget ran out with rows left to delete


def delete_finished_tasks(*, older_than: timedelta, batch_size: int, time_budget: float) -> CleanupReport:
    """Delete finished task records older than `older_than`, and their TaskResults, in batches.

    Each batch is its own short transaction, so the tables stay writable and no single
    giant DELETE holds locks or memory. Unfinished tasks (PENDING, STARTED, RETRY) are never
    touched. TaskResults with no record (tasks sent before records existed) go by the same rule.
    """
    cutoff = timezone.now() - older_than
    deadline = time.monotonic() + time_budget
    report = CleanupReport()
    old_records = TaskRecord.objects.filter(state__in=FINISHED_STATES).filter(
        Q(done_at__lt=cutoff) | Q(done_at__isnull=True, created_at__lt=cutoff)
    )
    # NOT EXISTS (an anti-join on the unique task_id index), not NOT IN over a million-row subquery.
    old_orphan_results = TaskResult.objects.filter(status__in=states.READY_STATES, date_done__lt=cutoff).exclude(
        Exists(TaskRecord.objects.filter(task_id=OuterRef("task_id")))
    )
    while True:
        with transaction.atomic():
            batch = list(old_records.order_by().values_list("pk", "task_id")[:batch_size])
            task_ids = [task_id for _, task_id in batch]
            report.results_deleted += TaskResult.objects.filter(task_id__in=task_ids).delete()[0]
            # Retries of a deleted record keep their own rows (retry_of is SET NULL).
            report.records_deleted += (
                TaskRecord.objects.filter(pk__in=[pk for pk, _ in batch]).delete()[1].get(TaskRecord._meta.label, 0)
            )
        if len(batch) < batch_size:
            break
        if time.monotonic() > deadline:
            report.more = True
            return report
    while True:
        with transaction.atomic():
            pks = list(old_orphan_results.order_by().values_list("pk", flat=True)[:batch_size])
            report.results_deleted += TaskResult.objects.filter(pk__in=pks).delete()[0]
        if len(pks) < batch_size:
            return report
        if time.monotonic() > deadline:
            report.more = True
            return report


# --- lost messages --------------------------------------------------------------------------------
@dataclass
class ResendReport:
    live_workers: list[str] = field(default_factory=list)
    resent_task_ids: list[str] = field(default_factory=list)
    # task id -> why it was left alone (held by a worker, still in the broker, cannot tell)
    left_alone: dict[str, str] = field(default_factory=dict)


def resend_lost_tasks(*, pending_for: timedelta, limit: int = 100) -> ResendReport:
    """Re-send tasks PENDING longer than `pending_for` whose message nobody has any more.

    Redis keeps nothing on disk: a restart or a failover can drop queued messages, and their
    records wait PENDING for ever. A record counts as lost when no live worker holds it
    (active, reserved or scheduled) and its message is in neither its broker queue nor the
    broker's unacknowledged set (those the lifeline hands back). It is then published again
    from the record: same task id, args, kwargs, queue and priority, noted in resent_count and
    resent_at. A record re-sent less than `pending_for` ago is not re-sent again, so one loss
    causes at most one re-send.
    """
    report = ResendReport()
    cutoff = timezone.now() - pending_for
    candidates = list(
        TaskRecord.objects.filter(state=TaskState.PENDING, created_at__lt=cutoff)
        .exclude(error__startswith=WAITING_PREFIX)  # held back on purpose, sent when its turn comes
        .filter(Q(eta__isnull=True) | Q(eta__lt=cutoff))
        .filter(Q(resent_at__isnull=True) | Q(resent_at__lt=cutoff))
        .order_by("created_at", "id")[:limit]
    )
    if not candidates:
        return report
    report.live_workers, held = task_ids_held_by_live_workers()
    with celery_app.connection_for_write() as connection:
        broker = BrokerView(connection.default_channel)
        for record in candidates:
            if record.task_id in held:
                report.left_alone[record.task_id] = "held by a live worker"
                continue
            present = broker.holds(record.task_id, record.queue)
            if present is not False:
                report.left_alone[record.task_id] = "in the broker" if present else "cannot tell (queue too long)"
                continue
            if _resend(record, cutoff):
                report.resent_task_ids.append(record.task_id)
    if report.resent_task_ids:
        logger.warning("re-sent %d lost task(s): %s", len(report.resent_task_ids), ", ".join(report.resent_task_ids))
    return report


def _resend(record: TaskRecord, cutoff) -> bool:
    locked = records.claim_resend(pk=record.pk, cutoff=cutoff)
    if locked is None:  # it started meanwhile, or another run of this job re-sent it
        return False
    publishing.resend(locked)  # after the mark's commit: same id, call and headers
    return True


class BrokerView:
    """Whether the broker still has a task's message: True, False, or None (cannot tell)."""

    def __init__(self, channel) -> None:
        self.channel = channel
        self.is_redis = hasattr(channel, "_q_for_pri") and hasattr(channel, "client")

    def holds(self, task_id: str, queue: str) -> bool | None:
        if not self.is_redis:
            # Other brokers (RabbitMQ) keep messages durably; an empty queue is all we can tell.
            try:
                _, count, _ = self.channel.queue_declare(queue=queue, passive=True)
            except Exception:  # noqa: BLE001 (an unknown queue, or a broker that refuses passive declares: cannot tell)
                return None
            return False if count == 0 else None
        client = self.channel.client
        needle = task_id.encode()
        keys = [self.channel._q_for_pri(queue, step) for step in self.channel.priority_steps]
        if sum(client.llen(key) for key in keys) > BROKER_SCAN_LIMIT:
            return None
        if any(needle in raw for key in keys for raw in client.lrange(key, 0, -1)):
            return True
        # Taken by a worker but not acknowledged: the lifeline's business, not a loss.
        unacked = self.channel.unacked_key
        if client.hlen(unacked) > BROKER_SCAN_LIMIT:
            return None
        return any(needle in raw for _, raw in client.hscan_iter(unacked, count=500))
