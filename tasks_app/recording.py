"""Record the tasks sent around the publish path (tasks_app.publishing).

Celery's `before_task_publish` fires in whatever process sends a task. Messages of the publish
path carry HEADER_RECORDED: their record is written already. Any other (`send_task` from a shell,
django-celery-beat's "run now" in the admin) is recorded here from the message itself, before it
leaves, with the same statement (tasks_app.records), so every task sent has a record.
"""

import logging

from celery.signals import before_task_publish
from django.conf import settings
from django.db import connection
from django.utils.dateparse import parse_datetime

from tasks_app import records
from tasks_app.publishing import HEADER_PERIODIC_TASK, HEADER_RECORDED, HEADER_RETRY_OF, HEADER_SUBMITTED_BY

logger = logging.getLogger(__name__)


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
    if not task_id or headers.get(HEADER_RECORDED):  # protocol 1 (not sent by this system), or recorded
        return
    if properties is not None and properties.get("priority") is None:
        # Sent without a priority (send_task by name, as the API does): kombu would file the message
        # under priority 0, the lowest of the seed's, while the system promises the default (5).
        # Celery publishes this same dict, so the message and the record both get the priority it runs at.
        properties["priority"] = settings.CELERY_TASK_DEFAULT_PRIORITY
    if connection.in_atomic_block:
        # tasks_app.publishing waits for the commit; a raw send_task cannot.
        logger.warning("task %s published inside a transaction; its record may commit after the message", task_id)
    args, kwargs = (body[0], body[1]) if isinstance(body, (list, tuple)) and len(body) >= 2 else ([], {})
    eta = parse_datetime(headers["eta"]) if headers.get("eta") else None
    retries = headers.get("retries") or 0
    if retries:
        # Celery's own retry re-sends the same task id: keep the record, note the attempt.
        records.note_celery_retry(task_id=task_id, retries=retries, eta=eta)
        return
    records.insert_published(
        task_id=task_id,
        task_name=headers.get("task") or sender or "",
        args=list(args) if isinstance(args, (list, tuple)) else [],
        kwargs=kwargs if isinstance(kwargs, dict) else {},
        queue=_queue_of(routing_key, declare),
        priority=(properties or {}).get("priority"),
        eta=eta,
        submitted_by_id=headers.get(HEADER_SUBMITTED_BY),
        retry_of_id=headers.get(HEADER_RETRY_OF),
        periodic_task_name=headers.get(HEADER_PERIODIC_TASK) or "",
    )
