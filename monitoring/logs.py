"""LOG_FORMAT=json: one JSON object a line, carrying the task and request a line belongs to.

Every line gets `task_id`, `task_name`, `queue` and `conversation_id` when it is logged inside
a Celery task (or is one of Celery's own lines about a task), and `request_id` when it belongs
to a web request or to a task published during one: RequestIdMiddleware takes the caller's
X-Request-ID (or makes one), answers with it, and puts it on every task the request publishes
(message header `claw_request_id`), so one reply can be followed across web, worker and callback.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid
from datetime import UTC, datetime

from celery import current_task
from celery.signals import before_task_publish
from django.core.signals import request_finished
from django.dispatch import receiver

HEADER = "claw_request_id"
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("claw_request_id", default=None)
VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
CONTEXT_FIELDS = ("task_id", "task_name", "queue", "conversation_id", "request_id")


def task_context() -> dict[str, str | None]:
    task = current_task
    if not task or getattr(task.request, "id", None) is None:  # a proxy: falsy outside a task
        return {}
    request = task.request
    context: dict[str, str | None] = {"task_id": request.id, "task_name": task.name}
    queue = (request.delivery_info or {}).get("routing_key")
    if queue:
        context["queue"] = queue
    conversation_id = (request.kwargs or {}).get("conversation_id")
    if conversation_id:
        context["conversation_id"] = str(conversation_id)
    request_id = getattr(request, HEADER, None)
    if request_id:
        context["request_id"] = request_id
    return context


class ContextFilter(logging.Filter):
    """Adds the context fields to every record (a handler filter: it sees records of every logger)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = task_context()
        data = getattr(record, "data", None)  # Celery's own task lines carry {"id", "name", ...}
        if isinstance(data, dict):
            context.setdefault("task_id", data.get("id"))
            context.setdefault("task_name", data.get("name"))
        request_id = _request_id.get()
        if request_id:
            context.setdefault("request_id", request_id)
        for name in CONTEXT_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, context.get(name))
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.processName,
        }
        entry.update({name: getattr(record, name) for name in CONTEXT_FIELDS if getattr(record, name, None)})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class RequestIdMiddleware:
    """Give every request an id (the caller's X-Request-ID when it is sane), and answer with it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        given = request.headers.get("X-Request-ID", "")
        request_id = given if VALID_REQUEST_ID.match(given) else uuid.uuid4().hex
        request.request_id = request_id
        # Kept until the response is closed (not reset on the way out): Django logs a 4xx/5xx
        # response ("Not Found: …") after the middleware chain returned.
        _request_id.set(request_id)
        response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response


@receiver(request_finished, dispatch_uid="monitoring.logs.forget_request_id")
def forget_request_id(**_kwargs) -> None:
    _request_id.set(None)


@before_task_publish.connect(dispatch_uid="monitoring.logs.carry_request_id")
def carry_request_id(headers=None, **_kwargs) -> None:
    # A task published during a request (or by a task that was) carries the request's id.
    if headers is None or headers.get(HEADER):
        return
    request_id = _request_id.get() or task_context().get("request_id")
    if request_id:
        headers[HEADER] = request_id
