"""GET /api/v1/tasks/stream/{task_id}: one AI reply as Server-Sent Events, as it is written.

An async Django view: while a stream is open it holds no thread and no Redis connection of its
own, only a coroutine waiting for the entries a shared reader finds (one XREAD BLOCK on many
streams, claw_ai.stream_readers), so an ASGI server serves a thousand watchers with one process
and a few Redis connections. The checks before the stream starts (authentication, the
task's visibility, its kind) run once in a thread, as any DRF view does, and answer in the API's
JSON error shape; from then on the database is asked only to build the final `done` / `error`
document and, now and then, to notice a task that ended without a final entry (cancelled before
it started, a worker killed mid-reply).

Events: `status`, `delta`, `reset` (drop the text so far: a retry writes the reply again),
then one of `done` / `error` (data: the /status document) or `cancelled` {"task_id", "partial"}.
Each has an `id:` that orders them (the Redis entry id); Last-Event-ID (or ?last_event_id=)
resumes exactly after it. A client that sends the id of the final event gets 204, which tells an
EventSource not to reconnect.
"""

from __future__ import annotations

import json
import logging
import time

from asgiref.sync import SyncToAsync, sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpResponse, StreamingHttpResponse
from django.utils.translation import gettext as _
from redis.exceptions import RedisError
from rest_framework.exceptions import APIException, MethodNotAllowed
from rest_framework.request import Request
from rest_framework.settings import api_settings

from claw_ai.errors import error_response
from conversations import reply_streams
from conversations.models import Message, MessageRole
from conversations.reply_streams import CANCELLED, DELTA, DONE, ERROR, RESET, STATUS, StreamEvent
from conversations.services import AI_GENERATION_TASK
from tasks_app import selectors
from tasks_app.models import TaskRecord, TaskState
from tasks_app.task_documents import task_status_document

logger = logging.getLogger(__name__)

FINISHED_STATES = frozenset({TaskState.SUCCESS, TaskState.FAILURE, TaskState.REVOKED})
# How long after its record says finished a task's worker gets to write the final entry itself.
FINAL_ENTRY_GRACE_SECONDS = 2.0
# ...and at most this long in all while it is still writing entries.
FINAL_ENTRY_LONGEST_WAIT_SECONDS = 30.0
# The record is looked at 1 s after the stream opened, then ever less often, up to the keep-alive
# interval: a task cancelled while queued ends its watchers' streams within a second or two, and
# a thousand idle watchers cost one query each per interval.
FIRST_RECORD_CHECK_SECONDS = 1.0


async def reply_stream(request, task_id: str):
    if request.method != "GET":
        refused = MethodNotAllowed(request.method[:20])
        response = error_response(str(refused.detail), code=refused.default_code, status=405)
        response["Allow"] = "GET"
        return response
    # Who asks comes first: an anonymous caller learns nothing, not even that its id was malformed.
    opened = await sync_to_async(_open)(request, task_id)
    if isinstance(opened, HttpResponse):
        return opened
    last_id = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id") or None
    if last_id is not None and not reply_streams.EVENT_ID.match(last_id):
        return error_response(
            _('Invalid Last-Event-ID: use the id of an event this stream sent (like "1700000000000-0").'),
            code="invalid_last_event_id",
            status=400,
        )
    try:
        first = await reply_streams.read_after(task_id, last_id or "0-0")
        if last_id is not None and not first and await _is_final_id(task_id, last_id):
            return HttpResponse(status=204)  # the client has the whole reply: no reconnecting
    except (RedisError, OSError):
        logger.warning("reply stream of %s: Redis unreachable", task_id, exc_info=True)
        return error_response(
            _("The live reply store (Redis) cannot be reached; try again, or poll /status."),
            code="service_unavailable",
            status=503,
        )
    stream = StreamingHttpResponse(
        ReplyEvents(opened, last_id, first).stream(), content_type="text/event-stream; charset=utf-8"
    )
    stream["Cache-Control"] = "no-cache"
    stream["X-Accel-Buffering"] = "no"  # nginx: pass events on as they come
    return stream


def _open(request, task_id: str) -> TaskRecord | HttpResponse:
    """Authenticate as the API does and find the caller's AI task; an error response otherwise."""
    try:
        return _open_in_database(request, task_id)
    finally:
        # The stream may stay open for minutes: hold no database connection meanwhile.
        connection.close()


def _open_in_database(request, task_id: str) -> TaskRecord | HttpResponse:
    # djangorestframework-stubs types the setting as its dotted paths; api_settings hands out the classes.
    authenticators = [cls() for cls in api_settings.DEFAULT_AUTHENTICATION_CLASSES]  # type: ignore[operator]
    drf_request = Request(request, authenticators=authenticators)
    try:
        user = drf_request.user
    except APIException as refused:
        return error_response(str(refused.detail), code="authentication_failed", status=401)
    if not user.is_authenticated:
        response = error_response(
            _("Authentication credentials were not provided."), code="not_authenticated", status=401
        )
        response["WWW-Authenticate"] = 'Token realm="api"'
        return response
    try:
        record = selectors.task_for_user(user=user, task_id=task_id)
    except TaskRecord.DoesNotExist:
        return error_response(_("No task %(task_id)s.") % {"task_id": task_id[:255]}, code="not_found", status=404)
    if record.task_name != AI_GENERATION_TASK:
        return error_response(
            _("Task %(task_id)s is not an AI reply (%(name)s): only AI replies stream; poll /status instead.")
            % {"task_id": task_id, "name": record.task_name},
            code="not_streamable",
            status=400,
        )
    return record


async def _is_final_id(task_id: str, event_id: str) -> bool:
    last = await reply_streams.read_last(task_id)
    return last is not None and last.id == event_id and last.is_final


def format_event(event: str, data: dict | bytes, event_id: str) -> bytes:
    """One event as the stream sends it; `data` as a dict, or JSON already (a stream entry's own).

    Bytes, not str: Django encodes a str chunk with the response's charset, parsing its
    Content-Type again for every chunk (a tenth of a busy web process's CPU, measurement 6).
    """
    encoded = data if isinstance(data, bytes) else json.dumps(data, ensure_ascii=False).encode()
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (event_id.encode(), event.encode(), encoded)


class ReplyEvents:
    """The events of one open stream, from `after` on."""

    def __init__(self, record: TaskRecord, last_id: str | None, first: list[StreamEvent]) -> None:
        self.record = record
        self.task_id = record.task_id
        self.resumed = last_id is not None
        self.after = last_id or "0-0"
        self.first = first
        self.keepalive = settings.STREAM_KEEPALIVE_SECONDS
        self.follower: reply_streams.Follower | None = None

    async def stream(self):
        _release_request_thread()
        try:
            async for chunk in self._events():
                yield chunk
        except (RedisError, OSError):
            # The client reconnects with its Last-Event-ID and resumes (or gets a 503 meanwhile).
            logger.warning("reply stream of %s ended: Redis failed", self.task_id, exc_info=True)
        finally:
            if self.follower is not None:  # the client left, or the stream ended: stop waiting for it
                self.follower.close()

    async def _next_events(self, wait_seconds: float) -> list[StreamEvent]:
        """What was written after the last event sent, waiting up to `wait_seconds` for it.

        One follower for the stream's whole life: its wait is shared with the other open streams
        (claw_ai.stream_readers), and it keeps its place between two calls.
        """
        if self.follower is None:
            self.follower = await reply_streams.follow(self.task_id, self.after)
        return await self.follower.next(wait_seconds)

    async def _events(self):  # noqa: C901, PLR0912 (the stream's cases, in the order a client meets them)
        if not self.first and not self.resumed:
            if self.record.state in FINISHED_STATES:
                for chunk in await self._from_database(streamed=None):
                    yield chunk
                return
            # Nothing written yet: the task waits in its queue (or for a retry).
            yield format_event(STATUS, {"status": self.record.state}, "0-0")
        for event in self.first:
            yield await self._send(event)
            if event.is_final:
                return
        check_every = FIRST_RECORD_CHECK_SECONDS
        next_check = time.monotonic() + check_every
        quiet_since = time.monotonic()
        while True:
            now = time.monotonic()
            wait = max(0.05, min(next_check, quiet_since + self.keepalive) - now)
            events = await self._next_events(wait)
            for event in events:
                yield await self._send(event)
                if event.is_final:
                    return
            now = time.monotonic()
            if events:
                quiet_since = now
                continue
            if now >= quiet_since + self.keepalive:
                yield b": keep-alive\n\n"
                quiet_since = now
            if now >= next_check:
                state = await in_shared_thread(_state_of)(self.task_id)
                if state in FINISHED_STATES:
                    async for chunk in self._ended_without_final_entry():
                        yield chunk
                    return
                check_every = min(check_every * 2, self.keepalive)
                next_check = now + check_every

    async def _send(self, event: StreamEvent) -> bytes:
        self.after = event.id
        if event.event in (DONE, ERROR):
            document = await in_shared_thread(_status_document)(self.task_id)
            return format_event(event.event, document, event.id)
        return format_event(event.event, event.raw_data, event.id)

    async def _ended_without_final_entry(self):
        """The record says finished; the worker may still be writing (a cancelled reply stops at its
        next look and saves what it wrote). Follow the stream while entries keep coming; once none
        came for FINAL_ENTRY_GRACE_SECONDS (no worker is writing: a terminated process, a crash),
        finish from the database."""
        deadline = time.monotonic() + FINAL_ENTRY_LONGEST_WAIT_SECONDS
        while time.monotonic() < deadline:
            events = await self._next_events(FINAL_ENTRY_GRACE_SECONDS)
            if not events:
                break
            for event in events:
                yield await self._send(event)
                if event.is_final:
                    return
        written = await reply_streams.read_all(self.task_id)
        # What this client was sent: the stream may hold more (entries its reader had not handed
        # on within the grace, on a busy server), and those go out below with the rest.
        streamed = reply_streams.text_sent(written, self.after) if written else None  # None: the stream is gone
        for chunk in await self._from_database(streamed=streamed):
            yield chunk

    async def _from_database(self, *, streamed: str | None) -> list[bytes]:
        """The end of the reply as the database has it, after the text the client got (`streamed`).

        streamed None: no stream exists; a fresh client gets the whole reply, a resuming one
        (it read the stream before it expired) only the end.
        """
        state, reply = await in_shared_thread(_state_and_reply)(self.task_id)
        ids = _ids_after(self.after)
        if streamed is None:
            streamed = reply if self.resumed else ""
        chunks = []
        if state == TaskState.SUCCESS and reply != streamed:
            if not reply.startswith(streamed):
                chunks.append(format_event(RESET, {"attempt": 0}, next(ids)))
                streamed = ""
            chunks.append(format_event(DELTA, {"text": reply[len(streamed) :]}, next(ids)))
        if state == TaskState.SUCCESS:
            chunks.append(format_event(DONE, await in_shared_thread(_status_document)(self.task_id), next(ids)))
        elif state == TaskState.FAILURE:
            chunks.append(format_event(ERROR, await in_shared_thread(_status_document)(self.task_id), next(ids)))
        else:
            partial = reply or streamed
            chunks.append(format_event(CANCELLED, {"task_id": self.task_id, "partial": partial}, next(ids)))
        return chunks


def _release_request_thread() -> None:
    """End the thread Django keeps for this request while the response streams.

    Under ASGI each request runs its sync work (sync middleware, signal receivers, the checks in
    _open) on a thread of its own (asgiref's ThreadSensitiveContext), kept until the response
    has been sent: for a stream, as long as the client watches. Its work is done once the stream
    starts, so its thread is let go here (a new one serves the few sync calls of the request's
    end); the stream's own database reads use a shared pool (in_shared_thread).
    """
    context = SyncToAsync.thread_sensitive_context.get(None)
    executor = SyncToAsync.context_to_thread_executor.pop(context, None) if context is not None else None
    if executor is not None:
        executor.shutdown(wait=False)


def in_shared_thread(function):
    """`function` as a coroutine run on the event loop's shared thread pool, closing its database connection."""

    def run(*args):
        try:
            return function(*args)
        finally:
            connection.close()

    return sync_to_async(run, thread_sensitive=False)


def _ids_after(after: str):
    """Ids for events made up from the database: after `after` and after anything written until now."""
    millis = max(int(time.time() * 1000), int(after.split("-", maxsplit=1)[0]) + 1)
    sequence = 0
    while True:
        yield f"{millis}-{sequence}"
        sequence += 1


def _state_of(task_id: str) -> str | None:
    return TaskRecord.objects.filter(task_id=task_id).values_list("state", flat=True).first()


def _state_and_reply(task_id: str) -> tuple[str | None, str]:
    reply = Message.objects.filter(task_id=task_id, role=MessageRole.ASSISTANT).values_list("content", flat=True)
    return _state_of(task_id), reply.first() or ""


def _status_document(task_id: str) -> dict:
    return task_status_document(TaskRecord.objects.select_related("retry_of").get(task_id=task_id))
