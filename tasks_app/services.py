"""Writes of the task system: submit, cancel and retry tasks.

Publishing happens outside any transaction: tasks_app.recording writes the record
(autocommit) just before the message leaves, so a worker never sees a task whose
record is not committed. When the broker cannot be reached, the record written
for the message is deleted again: no record claims a task is queued when it is not.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django_celery_results.models import TaskResult
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from claw_ai.celery import celery_app
from tasks_app.cancellation import flag_cancelled
from tasks_app.models import MANAGE_ALL_TASKS, TaskRecord, TaskState
from tasks_app.recording import HEADER_RETRY_OF, HEADER_SUBMITTED_BY, record_written_for
from tasks_app.selectors import unfinished_task_count

if TYPE_CHECKING:
    # The caller: request.user, an API user or (unauthenticated) AnonymousUser.
    from django.contrib.auth.models import AnonymousUser, User

logger = logging.getLogger(__name__)

# States a task may be cancelled in, and states a task may be retried from.
CANCELLABLE_STATES = frozenset({TaskState.PENDING, TaskState.STARTED, TaskState.RETRY})
RETRYABLE_STATES = frozenset({TaskState.FAILURE, TaskState.REVOKED})

# A client waits for the answer: try the broker briefly, then report it unreachable.
SUBMIT_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
BROKER_ERRORS = (KombuOperationalError, RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


class TaskStateConflict(Exception):
    """The task's state forbids the action (cancel a finished task, retry a running one)."""

    def __init__(self, record: TaskRecord, action: str) -> None:
        self.record = record
        self.action = action
        super().__init__(f"cannot {action} task {record.task_id} in state {record.state}")


class BrokerUnavailable(Exception):
    """The message could not be published; nothing was queued."""


class TooManyUnfinishedTasks(Exception):
    """The user already has MAX_UNFINISHED_TASKS_PER_USER tasks pending, running or waiting to retry."""

    def __init__(self, *, limit: int, unfinished: int) -> None:
        self.limit = limit
        self.unfinished = unfinished
        super().__init__(f"{unfinished} unfinished tasks, the limit is {limit}")


def ensure_below_unfinished_limit(*, user: User | AnonymousUser | None) -> None:
    """Refuse a new task from a user who already has the maximum number of unfinished ones.

    Bounds what one API user can make the broker and database hold. Holders of
    tasks_app.manage_all_tasks are exempt: they retry tasks in bulk (admin, API) to recover from
    incidents (asked only at the limit, so the common case costs no permission lookup). The count is read from the
    trigger-kept TaskCount rows (a few rows, however many tasks), so the check is cheap; it is
    not serialised, so concurrent requests of one user may pass it together and overshoot the
    limit by at most the number of requests in flight.
    """
    limit = settings.MAX_UNFINISHED_TASKS_PER_USER
    if not limit or user is None:
        return
    unfinished = unfinished_task_count(user=user)
    if unfinished >= limit and not user.has_perm(MANAGE_ALL_TASKS):
        raise TooManyUnfinishedTasks(limit=limit, unfinished=unfinished)


def submit_task(
    *,
    task_name: str,
    args: list | tuple = (),
    kwargs: dict[str, Any] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    countdown: float | None = None,
    eta: datetime | None = None,
    submitted_by: User | AnonymousUser | None = None,
    retry_of: TaskRecord | None = None,
    task_id: str | None = None,
) -> TaskRecord:
    """Publish a task and return its committed record. Raises BrokerUnavailable.

    `task_id` is for a caller that must know the id before the task leaves (it claims the work
    under it first); by default a new one is made.
    """
    if connection.in_atomic_block:
        # The record must be committed before the message leaves (see module docstring).
        raise RuntimeError("submit_task publishes at once: call it outside a transaction")
    task_id = task_id or str(uuid.uuid4())
    headers: dict[str, Any] = {}
    if submitted_by is not None:
        headers[HEADER_SUBMITTED_BY] = submitted_by.pk
    if retry_of is not None:
        headers[HEADER_RETRY_OF] = retry_of.pk
    options: dict[str, Any] = {"headers": headers}
    if queue:
        options["queue"] = queue
    if priority is not None:
        options["priority"] = priority
    if eta is not None:
        options["eta"] = eta
    elif countdown:
        options["countdown"] = countdown
    try:
        celery_app.send_task(
            task_name,
            args=list(args),
            kwargs=kwargs or {},
            task_id=task_id,
            retry=True,
            retry_policy=SUBMIT_RETRY_POLICY,
            **options,
        )
    except BROKER_ERRORS as exc:
        # recording.py wrote the record before the publish failed: it must not claim a queued task.
        TaskRecord.objects.filter(task_id=task_id).delete()
        logger.warning("could not publish %s (%s): %s", task_name, task_id, exc)
        raise BrokerUnavailable(str(exc)) from exc
    # A new task id cannot clash, so the record as recording.py wrote it is the stored row.
    return record_written_for(task_id) or TaskRecord.objects.get(task_id=task_id)


def cancel_task(*, record: TaskRecord, by: User | AnonymousUser | None = None) -> TaskRecord:
    """Cancel a queued, delayed or running task: its record reads REVOKED at once.

    The record and django-celery-results' TaskResult turn REVOKED in one transaction;
    after the commit Celery's revoke is broadcast (terminating a running task where
    the pool allows). A worker that never heard the revoke still refuses to run it
    (ClawTask checks the record), and the result backend keeps a REVOKED record REVOKED.
    Raises TaskStateConflict for a finished task.
    """
    with transaction.atomic():
        locked = TaskRecord.objects.select_for_update().get(pk=record.pk)
        if locked.state not in CANCELLABLE_STATES:
            raise TaskStateConflict(locked, "cancel")
        running = locked.state == TaskState.STARTED
        now = timezone.now()
        locked.state = TaskState.REVOKED
        locked.done_at = now
        who = by.get_username() if by is not None else "the system"
        locked.error = f"Cancelled by {who}"
        locked.save(update_fields=["state", "done_at", "error"])
        TaskResult.objects.update_or_create(
            task_id=locked.task_id,
            defaults={"status": TaskState.REVOKED, "task_name": locked.task_name, "date_done": now},
        )
        task_id = locked.task_id
        transaction.on_commit(lambda: _broadcast_revoke(task_id, terminate=running), robust=True)
    return locked


def _broadcast_revoke(task_id: str, *, terminate: bool) -> None:
    flag_cancelled(task_id)
    try:
        celery_app.control.revoke(task_id, terminate=terminate, signal="SIGTERM")
    except BROKER_ERRORS as exc:
        # The record is REVOKED: ClawTask will still refuse to run it.
        logger.warning("revoke of %s not broadcast: %s", task_id, exc)


class UnknownTaskName(Exception):
    """No worker of this system can run a task of that name."""


def retry_task(*, record: TaskRecord, by: User | AnonymousUser | None = None) -> tuple[TaskRecord, bool]:
    """Send a failed or cancelled task again: same task, args, kwargs, queue and priority, new id.

    Returns the retry and whether it is new: a task whose earlier retry is still pending,
    running or waiting to retry returns that one instead of sending a second. The new record
    points back with retry_of and belongs to the original task's submitter (or to `by` when the
    original had none). Raises UnknownTaskName for a task no worker knows, TaskStateConflict
    unless the task is FAILURE or REVOKED, TooManyUnfinishedTasks when `by` is at the
    unfinished-task limit, and BrokerUnavailable.
    """
    if record.task_name not in celery_app.tasks:
        raise UnknownTaskName(record.task_name)
    with transaction.atomic():
        # The lock makes a second retry of the same task wait until the first one's check is done.
        original = TaskRecord.objects.select_for_update().get(pk=record.pk)
        if original.state not in RETRYABLE_STATES:
            raise TaskStateConflict(original, "retry")
        pending = original.retried_by.unfinished().order_by("-created_at").first()
    if pending is not None:
        return pending, False
    ensure_below_unfinished_limit(user=by)
    owner = original.submitted_by if original.submitted_by_id else by
    again = submit_task(
        task_name=original.task_name,
        args=original.args,
        kwargs=original.kwargs,
        queue=original.queue or None,
        priority=original.priority,
        submitted_by=owner,
        retry_of=original,
    )
    return again, True
