"""Record every task at the moment it is published.

Celery's `before_task_publish` fires in whatever process sends a task: the web
process (API), a worker (retries, callbacks), beat (schedules) or a shell. The
record is written before the message leaves, in autocommit mode, so a worker
never receives a task whose record is not committed. (ClawTask.apply_async defers
publishing to on_commit when called inside a transaction.)

Who submitted a task and which task it retries travel as message headers, set
by tasks_app.services, so this one place records every path alike.
"""

import logging
import threading

from celery.signals import before_task_publish
from django.conf import settings
from django.db import connection
from django.utils.dateparse import parse_datetime

from tasks_app import records
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


@before_task_publish.connect(dispatch_uid="tasks_app.record_published_task")
def record_published_task(
    sender=None, body=None, headers=None, routing_key=None, properties=None, declare=None, **_kwargs
) -> None:
    headers = headers or {}
    task_id = headers.get("id")
    if not task_id:  # protocol 1 messages are not sent by this system
        return
    if properties is not None and properties.get("priority") is None:
        # Sent without a priority (send_task by name, as the API does): kombu would file the message
        # under priority 0, the lowest of the seed's, while the system promises the default (5).
        # Celery publishes this same dict, so the message and the record both get the priority it runs at.
        properties["priority"] = settings.CELERY_TASK_DEFAULT_PRIORITY
    if connection.in_atomic_block:
        logger.warning("task %s published inside a transaction; its record may commit after the message", task_id)
    args, kwargs = (body[0], body[1]) if isinstance(body, (list, tuple)) and len(body) >= 2 else ([], {})
    eta = parse_datetime(headers["eta"]) if headers.get("eta") else None
    retries = headers.get("retries") or 0
    if retries:
        # Celery's own retry re-sends the same task id: keep the record, note the attempt.
        records.note_celery_retry(task_id=task_id, retries=retries, eta=eta)
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
    _written.record = records.insert_published(task_id=task_id, **fields)
