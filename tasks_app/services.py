"""Writes of the task system: submit, cancel and retry tasks.

Tasks leave through tasks_app.publishing, which writes the record and decides what happens inside
a transaction; the task record's statements are tasks_app.records'.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction

from claw_ai.celery import celery_app
from tasks_app import publishing, records, revoke_announcement
from tasks_app.cancellation import flag_cancelled
from tasks_app.models import MANAGE_ALL_TASKS, TaskRecord, TaskState
from tasks_app.publishing import BROKER_ERRORS, BrokerUnavailable
from tasks_app.selectors import unfinished_task_count

if TYPE_CHECKING:
    from datetime import datetime

    from django.contrib.auth.models import AbstractBaseUser, AbstractUser

logger = logging.getLogger(__name__)

# States a task may be cancelled in, and states a task may be retried from.
CANCELLABLE_STATES = frozenset({TaskState.PENDING, TaskState.STARTED, TaskState.RETRY})
RETRYABLE_STATES = frozenset({TaskState.FAILURE, TaskState.REVOKED})

__all__ = ["BrokerUnavailable", "cancel_task", "retry_task", "submit_task"]  # BrokerUnavailable: publishing's


class TaskStateConflict(Exception):
    """The task's state forbids the action (cancel a finished task, retry a running one)."""

    def __init__(self, record: TaskRecord, action: str) -> None:
        self.record = record
        self.action = action
        super().__init__(f"cannot {action} task {record.task_id} in state {record.state}")


class TooManyUnfinishedTasks(Exception):
    """The user already has MAX_UNFINISHED_TASKS_PER_USER tasks pending, running or waiting to retry."""

    def __init__(self, *, limit: int, unfinished: int) -> None:
        self.limit = limit
        self.unfinished = unfinished
        super().__init__(f"{unfinished} unfinished tasks, the limit is {limit}")


def ensure_below_unfinished_limit(*, user: AbstractUser | None) -> None:
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
    submitted_by: AbstractBaseUser | None = None,
    retry_of: TaskRecord | None = None,
    task_id: str | None = None,
) -> TaskRecord:
    """Publish a task and return its record. Raises BrokerUnavailable (tasks_app.publishing.publish).

    `task_id` is for a caller that must know the id before the task leaves (it claims the work
    under it first); by default a new one is made.
    """
    return publishing.publish(
        task_name=task_name,
        args=args,
        kwargs=kwargs,
        queue=queue,
        priority=priority,
        countdown=countdown,
        eta=eta,
        submitted_by_id=submitted_by.pk if submitted_by is not None else None,
        retry_of_id=retry_of.pk if retry_of is not None else None,
        task_id=task_id,
    )


def cancel_task(*, record: TaskRecord, by: AbstractUser | None = None) -> TaskRecord:
    """Cancel a queued, delayed or running task: its record reads REVOKED at once.

    The record and django-celery-results' TaskResult turn REVOKED in one transaction;
    after the commit Celery's revoke is broadcast (terminating a running task where the
    pool allows, unless the task stops itself when cancelled: an AI reply). A worker that
    never heard the revoke still refuses to run it (ClawTask checks the record), and the
    result backend keeps a REVOKED record REVOKED.
    Raises TaskStateConflict for a finished task.
    """
    with transaction.atomic():
        locked = records.lock(pk=record.pk)
        if locked.state not in CANCELLABLE_STATES:
            raise TaskStateConflict(locked, "cancel")
        running = locked.state == TaskState.STARTED
        # A running task that stops itself when cancelled is not terminated (tasks_app.tasks.base).
        registered = celery_app.tasks.get(locked.task_name)
        terminate = running and not getattr(registered, "stops_itself_when_cancelled", False)
        who = by.get_username() if by is not None else "the system"
        records.store_revoked(locked, reason=f"Cancelled by {who}")
        task_id = locked.task_id
        transaction.on_commit(lambda: _broadcast_revoke(task_id, terminate=terminate), robust=True)
    return locked


def _broadcast_revoke(task_id: str, *, terminate: bool) -> None:
    flag_cancelled(task_id)
    try:
        celery_app.control.revoke(task_id, terminate=terminate, signal="SIGTERM")
        revoke_announcement.announce(task_id)  # Flower sees REVOKED now, not when a delayed task's eta comes
    except BROKER_ERRORS as exc:
        # The record is REVOKED: ClawTask will still refuse to run it.
        logger.warning("revoke of %s not broadcast: %s", task_id, exc)


class UnknownTaskName(Exception):
    """No worker of this system can run a task of that name."""


def retry_task(*, record: TaskRecord, by: AbstractUser | None = None) -> tuple[TaskRecord, bool]:
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
        original = records.lock(pk=record.pk)
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
