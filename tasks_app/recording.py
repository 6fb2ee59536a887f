"""Record every task at the moment it is published.

Celery's `before_task_publish` fires in whatever process sends a task: the web
process (API), a worker (retries, callbacks), beat (schedules) or a shell. The
record is written before the message leaves, in autocommit mode, so a worker
never receives a task whose record is not committed. (ClawTask.apply_async defers
publishing to on_commit when called inside a transaction.)

Who submitted a task and which task it retries travel as message headers, set
by tasks_app.services, so this one place records every path alike.
"""

import functools
import logging
import threading

from celery.signals import before_task_publish
from django.db import connection
from django.utils.dateparse import parse_datetime

from claw_ai.inserts import column_list, column_of, insert_fields, insert_values, placeholders
from tasks_app.models import TaskRecord

logger = logging.getLogger(__name__)

HEADER_SUBMITTED_BY = "claw_submitted_by"
HEADER_RETRY_OF = "claw_retry_of"

# The record this thread wrote last, for tasks_app.services.submit_task to return without reading
# it back (the signal's return value does not reach the publisher).
_written = threading.local()


def record_written_for(task_id: str) -> TaskRecord | None:
    """The record this thread's last publish wrote, if it was for `task_id`."""
    record = getattr(_written, "record", None)
    _written.record = None
    return record if record is not None and record.task_id == task_id else None


def _queue_of(routing_key: str | None, declare) -> str:
    for entity in declare or ():
        name = getattr(entity, "name", None)
        if name:
            return name
    return routing_key or ""


@functools.cache
def _record_sql(published_fields: tuple[str, ...]) -> str:
    """INSERT the record, or for a re-send of a lost task (same id) update only what publishing
    sets, keeping its state, creation time and re-send count. The stored row's id, state and
    creation time come back."""
    meta, quote = TaskRecord._meta, connection.ops.quote_name
    updates = ", ".join(
        f"{quote(column)} = EXCLUDED.{quote(column)}"
        for column in (column_of(TaskRecord, name) for name in published_fields)
    )
    returned = column_list(meta.get_field(name) for name in ("id", "state", "created_at"))
    return (
        f"INSERT INTO {quote(meta.db_table)} ({column_list(insert_fields(TaskRecord))}) "
        f"VALUES ({placeholders(TaskRecord)}) "
        f"ON CONFLICT ({quote(meta.get_field('task_id').column)}) DO UPDATE SET {updates} RETURNING {returned}"
    )


@before_task_publish.connect(dispatch_uid="tasks_app.record_published_task")
def record_published_task(
    sender=None, body=None, headers=None, routing_key=None, properties=None, declare=None, **_kwargs
) -> None:
    headers = headers or {}
    task_id = headers.get("id")
    if not task_id:  # protocol 1 messages are not sent by this system
        return
    if connection.in_atomic_block:
        logger.warning("task %s published inside a transaction; its record may commit after the message", task_id)
    args, kwargs = (body[0], body[1]) if isinstance(body, (list, tuple)) and len(body) >= 2 else ([], {})
    eta = parse_datetime(headers["eta"]) if headers.get("eta") else None
    retries = headers.get("retries") or 0
    if retries:
        # Celery's own retry re-sends the same task id: keep the record, note the attempt.
        TaskRecord.objects.filter(task_id=task_id).update(retries=retries, eta=eta)
        return
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    fields = {
        "task_name": headers.get("task") or sender or "",
        "args": list(args) if isinstance(args, (list, tuple)) else [],
        "kwargs": kwargs,
        "queue": _queue_of(routing_key, declare),
        "priority": (properties or {}).get("priority"),
        "eta": eta,
        "submitted_by_id": headers.get(HEADER_SUBMITTED_BY),
        "retry_of_id": headers.get(HEADER_RETRY_OF),
        "user_id": str(kwargs.get("user_id") or "")[:255],
        "conversation_id": str(kwargs.get("conversation_id") or "")[:255],
        "periodic_task_name": (headers.get("periodic_task_name") or "")[:255],
    }
    # One INSERT ... ON CONFLICT statement: publishing costs a single round trip to PostgreSQL.
    record = TaskRecord(task_id=task_id, **fields)
    with connection.cursor() as cursor:
        cursor.execute(_record_sql(tuple(fields)), insert_values(record))
        record.pk, record.state, record.created_at = cursor.fetchone()
    record._state.adding, record._state.db = False, connection.alias
    _written.record = record
