"""Reads of task records, scoped to the caller where a caller is involved."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _
from django_celery_results.models import TaskResult

from tasks_app import records
from tasks_app.models import VIEW_ALL_TASKS, WAITING_PREFIX, TaskCount, TaskRecord, TaskState
from tasks_app.workers import Discovery, live_workers

if TYPE_CHECKING:
    # The caller: a signed-in user (the permission checks need has_perm, which AbstractBaseUser lacks).
    from django.contrib.auth.models import AbstractUser
    from django.db.models import QuerySet

# Longer ids are no Celery task id; they never reach the database.
TASK_ID_MAX_LENGTH = 255


def tasks_visible_to(*, user: AbstractUser) -> QuerySet[TaskRecord]:
    return TaskRecord.objects.visible_to(user)


def task_for_user(*, user: AbstractUser, task_id: str) -> TaskRecord:
    """The caller's task (any task with tasks_app.view_all_tasks). Raises TaskRecord.DoesNotExist otherwise.

    Another tenant's task is as unknown as one never sent: its id tells the caller nothing.
    """
    if not task_id or len(task_id) > TASK_ID_MAX_LENGTH or "\x00" in task_id:
        raise TaskRecord.DoesNotExist(task_id)
    record = TaskRecord.objects.select_related("retry_of").get(task_id=task_id)
    # The permission is looked up only for another's task: the caller's own costs no query more.
    if record.submitted_by_id != user.pk and not user.has_perm(VIEW_ALL_TASKS):
        raise TaskRecord.DoesNotExist(task_id)
    return record


def task_list(
    *,
    user: AbstractUser,
    status: str | None = None,
    queue: str | None = None,
    task_name: str | None = None,
    conversation_id: str | None = None,
    user_id: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[TaskRecord]:
    """Newest first; each filter matches one indexed column (see TaskRecord.Meta.indexes)."""
    queryset = tasks_visible_to(user=user).select_related("retry_of").defer("traceback", "args", "kwargs")
    exact = {
        "state": status,
        "queue": queue,
        "task_name": task_name,
        "conversation_id": conversation_id,
        "user_id": user_id,
    }
    queryset = queryset.filter(**{column: value for column, value in exact.items() if value})
    if created_after:
        queryset = queryset.filter(created_at__gte=created_after)
    if created_before:
        queryset = queryset.filter(created_at__lt=created_before)
    return queryset.order_by("-created_at", "-id")


STATE_KEYS = {state: state.lower() for state in TaskState.values}


def task_stats(*, user: AbstractUser) -> dict[str, Any]:
    """Counts by state and by queue, summed from the trigger-kept TaskCount rows.

    A few rows however many tasks there are: every task with tasks_app.view_all_tasks, the
    caller's own otherwise.
    """
    owner = TaskCount.ALL_OWNERS if user.has_perm(VIEW_ALL_TASKS) else user.pk
    rows = records.counts_by_queue_and_state(owner=owner)
    totals = dict.fromkeys(STATE_KEYS.values(), 0)
    queues: dict[str, dict[str, int]] = {}
    for queue, state, count in rows:
        key = STATE_KEYS.get(state)
        if key is None or not count:
            continue
        totals[key] += count
        per_queue = queues.setdefault(queue, {"total": 0, **dict.fromkeys(STATE_KEYS.values(), 0)})
        per_queue[key] += count
        per_queue["total"] += count
    return {"total_tasks": sum(totals.values()), **totals, "queues": dict(sorted(queues.items()))}


def unfinished_task_count(*, user: AbstractUser) -> int:
    """Tasks the user submitted that are PENDING, STARTED or RETRY, from the TaskCount rows."""
    return records.unfinished_count(owner=user.pk)


def retried_task_ids(*, record_id: int | None, depth: int = 100) -> list[str]:
    """The task id of the record `record_id`, then those of the tasks it retries, nearest first."""
    if record_id is None:
        return []
    return records.retry_chain(record_id=record_id, depth=depth)


def task_result_value(*, record: TaskRecord) -> Any:
    """The task's return value, parsed from django-celery-results' TaskResult (SUCCESS only)."""
    if record.state != TaskState.SUCCESS:
        return None
    stored = TaskResult.objects.filter(task_id=record.task_id).values_list("result", flat=True).first()
    if stored is None:
        return None
    try:
        return json.loads(stored)
    except (TypeError, ValueError):
        return stored


def _consumers_of(live: Discovery, queue: str) -> list[str]:
    return sorted(name for name, queues in live.queues.items() if queue in queues)


def pending_reason(*, record: TaskRecord, live: Discovery | None = None) -> str | None:
    """Why a task is still PENDING, where the system can tell; None when it is not (yet) unusual.

    The live workers come from the last discovery (tasks_app.workers.live_workers), which never
    makes the caller wait: before the first discovery nothing is claimed, and a discovery older
    than WORKER_DISCOVERY_CACHE_SECONDS is named with its time.
    """
    if record.state != TaskState.PENDING:
        return None
    if record.error.startswith(WAITING_PREFIX):
        return _("Waiting its turn before it is sent to the workers (%(why)s).") % {"why": record.error}
    now = timezone.now()
    if record.eta and record.eta > now:
        return _("Scheduled: it will not start before %(eta)s.") % {"eta": record.eta.isoformat()}
    if (now - record.created_at).total_seconds() < settings.TASK_PENDING_EXPLAIN_AFTER:
        return None
    if live is None:
        live = live_workers()
    if live.checked_at is None:  # not live.known, in a form the type checker follows
        return None
    if not live.queues:
        reason = _("No live worker: start a worker consuming queue %(queue)s.") % {"queue": record.queue}
    elif not (consumers := _consumers_of(live, record.queue)):
        reason = _("No live worker consumes queue %(queue)s (live workers consume: %(queues)s).") % {
            "queue": record.queue,
            "queues": ", ".join(sorted({q for qs in live.queues.values() for q in qs})),
        }
    else:
        reason = _("Waiting in queue %(queue)s for a free slot on %(workers)s.") % {
            "queue": record.queue,
            "workers": ", ".join(consumers),
        }
    if live.age > settings.WORKER_DISCOVERY_CACHE_SECONDS:
        checked = datetime.fromtimestamp(live.checked_at, tz=timezone.get_current_timezone())
        reason += " " + _("(Workers as seen at %(time)s.)") % {"time": checked.isoformat(timespec="seconds")}
    return reason
