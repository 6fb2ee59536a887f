"""How a task leaves: the one publish path of the system, which writes the task's record itself.

Every send of the system comes here: the API and the admin (submit_task, retry_task), the
stuck-task job's re-send, and `apply_async` of every task class (ClawTask), which is also how
Celery's own retries, callbacks and beat's schedules leave. Each writes the record (one statement,
tasks_app.records) and then publishes, with a header saying the record is written. Whatever is
sent around this path (`send_task` from a shell, django-celery-beat's "run now") is recorded by
the `before_task_publish` signal (tasks_app.recording), which leaves marked messages alone.

One rule for transactions: a message never leaves inside one. Inside a transaction the record is
written in it (so it commits, or not, with the rows the task needs) and the message waits for the
commit; a worker can never receive a task whose record or rows are not committed yet.

A message that cannot leave leaves no record claiming it is queued: the record is deleted again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from celery.utils import uuid
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from claw_ai.celery import celery_app
from tasks_app import batching, records

if TYPE_CHECKING:
    from collections.abc import Callable

    from tasks_app.models import TaskRecord

logger = logging.getLogger(__name__)

# Who submitted a task and which task it retries travel with the message (workers read them too).
HEADER_SUBMITTED_BY = "claw_submitted_by"
HEADER_RETRY_OF = "claw_retry_of"
# The publisher wrote the record: the before_task_publish signal has nothing to do.
HEADER_RECORDED = "claw_recorded"
HEADER_PERIODIC_TASK = "periodic_task_name"  # django-celery-beat's

# A client waits for the answer: try the broker briefly, then report it unreachable.
SUBMIT_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
BROKER_ERRORS = (KombuOperationalError, RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


class BrokerUnavailable(Exception):
    """The message could not be published; nothing was queued."""


def publish(
    *,
    task_name: str,
    args: list | tuple = (),
    kwargs: dict[str, Any] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    countdown: float | None = None,
    eta: datetime | None = None,
    submitted_by_id: int | None = None,
    retry_of_id: int | None = None,
    task_id: str | None = None,
) -> TaskRecord:
    """Record and send a task by name; return its record. Raises BrokerUnavailable.

    `task_id` is for a caller that must know the id before the task leaves (it claims the work
    under it first); by default a new one is made. Inside a transaction the message leaves at the
    commit (see the module docstring), and a broker error then is logged, not raised.
    """
    prepared = prepare(
        task_name=task_name,
        args=args,
        kwargs=kwargs,
        queue=queue,
        priority=priority,
        countdown=countdown,
        eta=eta,
        submitted_by_id=submitted_by_id,
        retry_of_id=retry_of_id,
        task_id=task_id,
    )
    prepared.send()
    return prepared.record


@dataclass
class Prepared:
    """A task whose record is written (in the caller's transaction, if any) and whose message is not sent yet."""

    record: TaskRecord
    message: Callable[[], Any]

    def send(self) -> None:
        """Publish the message, after the commit of the record: now outside a transaction, at its
        commit inside one (tasks_app.publishing's rule). Raises BrokerUnavailable when it cannot
        leave now, after deleting the record (no record claims a task is queued that is not); at a
        commit, the error is logged."""
        try:
            _send_after_commit(self.message, task_id=self.record.task_id)
        except BROKER_ERRORS as exc:
            logger.warning("could not publish %s (%s): %s", self.record.task_name, self.record.task_id, exc)
            raise BrokerUnavailable(str(exc)) from exc


def prepare(
    *,
    task_name: str,
    args: list | tuple = (),
    kwargs: dict[str, Any] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    countdown: float | None = None,
    eta: datetime | None = None,
    submitted_by_id: int | None = None,
    retry_of_id: int | None = None,
    task_id: str | None = None,
) -> Prepared:
    """The first half of publish(): write the record now, return it with the send for later.

    For a caller that writes other rows with the record in one transaction (one commit, where
    publish() inside it would make the API answer before knowing whether the message left): it
    calls `send()` after its commit, and so learns of a broker error.
    """
    task_id = task_id or uuid()
    args, kwargs = list(args), kwargs or {}
    options: dict[str, Any] = {"queue": queue} if queue else {}
    registered = celery_app.tasks.get(task_name)
    if priority is None:
        priority = getattr(registered, "priority", None)  # send_task's default: the registered task's
    options["priority"] = priority = _runs_at(priority)
    eta = _eta(eta, countdown)
    if eta is not None:
        options["eta"] = eta
    record = _write(
        lambda: records.insert_published(
            task_id=task_id,
            task_name=task_name,
            args=args,
            kwargs=kwargs,
            queue=_queue(task_name, args, kwargs, options, registered),
            priority=priority,
            eta=eta,
            submitted_by_id=submitted_by_id,
            retry_of_id=retry_of_id,
        )
    )
    headers = _headers(submitted_by_id=submitted_by_id, retry_of_id=retry_of_id)
    return Prepared(
        record,
        lambda: celery_app.send_task(
            task_name,
            args=args,
            kwargs=kwargs,
            task_id=task_id,
            headers=headers,
            retry=True,
            retry_policy=SUBMIT_RETRY_POLICY,
            **options,
        ),
    )


def _runs_at(priority: int | None) -> int:
    """The priority a task runs at: without one, kombu would file the message under 0, the lowest
    of the seed's, while the system promises the default (5); the record says the same."""
    return settings.CELERY_TASK_DEFAULT_PRIORITY if priority is None else priority


def apply_async(task, args, kwargs, task_id: str | None, options: dict[str, Any], send: Callable):
    """Task.apply_async of every task of the system (ClawTask): record, then `send` (Celery's own).

    Celery's own retry re-sends the same task id with `retries` set: the record stays and the
    attempt is noted. Routing, links and the rest are Celery's; the record takes the queue and
    priority Celery gives the message.
    """
    task_id = task_id or uuid()
    args, kwargs = args or (), kwargs or {}
    eta = _eta(options.pop("eta", None), options.pop("countdown", None))
    if eta is not None:
        options["eta"] = eta
    headers = options["headers"] = {**(options.get("headers") or {}), HEADER_RECORDED: True}
    options["priority"] = _runs_at(options.get("priority", task.priority))  # as Task.apply_async merges it
    retries = options.get("retries") or 0
    if retries:
        _write(lambda: records.note_celery_retry(task_id=task_id, retries=retries, eta=eta))
        sent = _send_after_commit(lambda: send(args, kwargs, task_id, **options), task_id=task_id, forget=False)
        return sent if sent is not None else task.AsyncResult(task_id)
    record = {
        "task_id": task_id,
        "task_name": task.name,
        "args": list(args),
        "kwargs": kwargs,
        "queue": _queue(task.name, args, kwargs, options, task),
        "priority": options["priority"],
        "eta": eta,
        "submitted_by_id": headers.get(HEADER_SUBMITTED_BY),
        "retry_of_id": headers.get(HEADER_RETRY_OF),
        "periodic_task_name": headers.get(HEADER_PERIODIC_TASK) or "",
    }
    held = batching.current()
    if held is not None:
        # A group's task: its record is written with the others' in one commit, then it is sent
        # on the batch's producer (the caller's may be released by then).
        options.pop("producer", None)
        held.held.append(
            batching.Held(record, lambda producer: send(args, kwargs, task_id, producer=producer, **options))
        )
        return task.AsyncResult(task_id)
    _write(lambda: records.insert_published(**record))
    if connection.in_atomic_block:
        # Sent at the commit: a producer the caller lent (a group's) is back in its pool by then.
        options.pop("producer", None)
    sent = _send_after_commit(lambda: send(args, kwargs, task_id, **options), task_id=task_id)
    return sent if sent is not None else task.AsyncResult(task_id)


def resend(record: TaskRecord) -> None:
    """Publish a recorded task again, as it was: same id, call, queue, priority, eta and headers.

    The record stays as it is (the caller marked the re-send). Raises the broker's error.
    """
    headers = _headers(submitted_by_id=record.submitted_by_id, retry_of_id=record.retry_of_id)
    if record.periodic_task_name:
        headers[HEADER_PERIODIC_TASK] = record.periodic_task_name
    celery_app.send_task(
        record.task_name,
        args=record.args,
        kwargs=record.kwargs,
        task_id=record.task_id,
        queue=record.queue or None,
        priority=record.priority,
        eta=record.eta,
        headers=headers,
    )


def _write(statement: Callable[[], Any]) -> Any:
    """Run a record statement; on a connection PostgreSQL dropped (a restart, a terminated backend), once more.

    A task retrying after a database error publishes its retry on the connection that failed: a
    fresh one lets the retry leave. Inside a transaction the connection cannot be replaced.
    """
    try:
        return statement()
    except (OperationalError, InterfaceError):
        if connection.in_atomic_block:
            raise
        connection.close()
        return statement()


def _headers(*, submitted_by_id: int | None, retry_of_id: int | None) -> dict[str, Any]:
    headers: dict[str, Any] = {HEADER_RECORDED: True}
    if submitted_by_id is not None:
        headers[HEADER_SUBMITTED_BY] = submitted_by_id
    if retry_of_id is not None:
        headers[HEADER_RETRY_OF] = retry_of_id
    return headers


def _eta(eta: datetime | None, countdown: float | None) -> datetime | None:
    """The time the message will carry: the record and the message say the same."""
    if eta is None and countdown:
        return timezone.now() + timedelta(seconds=countdown)
    return eta


def _queue(task_name: str, args, kwargs, options: dict, task_type) -> str:
    """The queue Celery's router sends to: the caller's, else task_routes', else the default queue."""
    exec_options = task_type._get_exec_options() if task_type is not None else {}
    merged = {**{name: value for name, value in exec_options.items() if value is not None}, **options}
    routed = celery_app.amqp.router.route(merged, task_name, args, kwargs, task_type)
    destination = routed.get("queue")
    return getattr(destination, "name", None) or routed.get("routing_key") or ""


def _send_after_commit(send: Callable[[], Any], *, task_id: str, forget: bool = True):
    """The transaction rule: send now in autocommit (returning what `send` returns), else at the commit.

    A message that does not leave has its record deleted (`forget`; a retry's record is the
    task's own and stays). A send that fails now raises; one that fails at the commit cannot
    reach the caller any more, so it is logged.
    """
    if not connection.in_atomic_block:
        try:
            return send()
        except Exception:  # a broker error, arguments the task does not take: nothing was queued
            if forget:
                records.forget_unsent(task_id=task_id)
            raise

    def send_at_commit() -> None:
        try:
            send()
        except Exception:
            if forget:
                records.forget_unsent(task_id=task_id)
            logger.warning("could not publish task %s after the commit", task_id, exc_info=True)

    transaction.on_commit(send_at_commit)
    return None
