"""Each AI reply's text as it is written, kept in a Redis stream per task for live readers.

The worker appends; GET /api/v1/tasks/stream/{id} (conversations.api.streaming) replays and
follows (its waits share a few Redis connections: claw_ai.stream_readers). The saved Message
stays the source of truth: the stream is a cache of it, kept STREAM_RETENTION_SECONDS after the
task ended, then gone (the endpoint falls back to the database).

Entries, in order (each has the stream's own id, which orders them; the endpoint sends it as the
event's `id:`), with fields `event` and `data` (JSON):
- `status` {"status": "STARTED" | "RETRY"}: an attempt started, or the task will be retried;
- `delta` {"text": "..."}: the next piece of the reply;
- `reset` {"attempt": n}: the attempt that starts here writes the reply from the beginning: a
  reader drops the text it has (an earlier attempt failed, or its worker died, after some text
  was shown). Without it a retry would show the user the same words twice. Written only when
  the stream already holds entries, i.e. never for a first attempt;
- one final entry: `done` or `error` (the endpoint answers with the task's /status document) or
  `cancelled` {"task_id", "partial"}.

Writes are coalesced: after the first piece (written at once), pieces arriving within
STREAM_FLUSH_MS of the last write wait and go out together, so a provider sending 100 tokens a
second costs ~20 writes, not 100. A stream holds at most STREAM_MAX_EVENTS entries: near that, the
rest of the text waits for the end and goes out as one piece, so nothing a reader needs is ever
trimmed away.

The text so far is also kept as one string (tasks_app.task_progress), for /status's `partial`.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from redis.exceptions import RedisError

from claw_ai import redis_clients, stream_readers
from tasks_app.task_progress import partial_key

if TYPE_CHECKING:
    from redis.typing import EncodableT, FieldT

logger = logging.getLogger(__name__)

STATUS, DELTA, RESET = "status", "delta", "reset"
DONE, ERROR, CANCELLED = "done", "error", "cancelled"
FINAL_EVENTS = frozenset({DONE, ERROR, CANCELLED})
# Entries kept free below STREAM_MAX_EVENTS for the statuses, the last piece and the final entry.
RESERVED_ENTRIES = 8
# A Redis stream entry id, the form a client sends back in Last-Event-ID.
EVENT_ID = re.compile(r"\A\d{1,20}-\d{1,20}\Z")


def stream_key(task_id: str) -> str:
    return f"claw:reply-stream:{task_id}"


@dataclass(frozen=True)
class StreamEvent:
    id: str
    event: str
    data: dict

    @property
    def is_final(self) -> bool:
        return self.event in FINAL_EVENTS


def parse_entries(entries) -> list[StreamEvent]:
    """redis-py's [(id, {field: value})] as events."""
    return [
        StreamEvent(
            id=entry_id.decode(),
            event=fields[b"event"].decode(),
            data=json.loads(fields.get(b"data") or b"{}"),
        )
        for entry_id, fields in entries
    ]


def text_of(events: list[StreamEvent]) -> str:
    """The reply's text as these events (from the stream's start) spell it: the pieces after the last reset."""
    pieces: list[str] = []
    for event in events:
        if event.event == RESET:
            pieces.clear()
        elif event.event == DELTA:
            pieces.append(event.data.get("text", ""))
    return "".join(pieces)


class ReplyStreamWriter:
    """The stream of one attempt at one task's reply (conversations.provider_calls.TextListener).

    `text()` is called from the thread reading the provider, `flush_due()` from the task's own
    thread: a lock keeps the two apart. A failing Redis never fails the reply: the writer logs
    it and stops writing (readers then finish from the saved Message).
    """

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.key = stream_key(task_id)
        self.flush_seconds = settings.STREAM_FLUSH_MS / 1000
        self.first_text_at: float | None = None  # time.monotonic() of the first piece
        self._lock = threading.Lock()
        self._pieces: list[str] = []  # every piece of this attempt, written or not
        self._waiting: list[str] = []  # pieces not written yet
        self._last_write = 0.0
        self._entries = 0
        self._closed = False
        self._broken = False

    @property
    def text_so_far(self) -> str:
        with self._lock:
            return "".join(self._pieces)

    def start(self, *, attempt: int) -> None:
        """An attempt begins: a stream that holds entries already (an earlier attempt) is reset first."""
        client = redis_clients.client()
        try:
            self._entries = client.xlen(self.key)
        except RedisError:
            self._fail("start")
            return
        commands: list[tuple[str, dict]] = [] if not self._entries else [(RESET, {"attempt": attempt})]
        commands.append((STATUS, {"status": "STARTED"}))
        self._write(commands, partial="")

    def text(self, piece: str) -> None:
        with self._lock:
            if self._closed:
                return  # the provider thread may still deliver a piece after a cancellation
            first = self.first_text_at is None
            if first:
                self.first_text_at = time.monotonic()
            self._pieces.append(piece)
            self._waiting.append(piece)
            # The first piece goes out at once: it is what the reader waits longest for, and the
            # STARTED entry written just before would otherwise hold it back a whole flush window.
            if first or time.monotonic() - self._last_write >= self.flush_seconds:
                self._write_waiting()

    def flush_due(self) -> float | None:
        with self._lock:
            if not self._waiting or self._closed:
                return None
            left = self._last_write + self.flush_seconds - time.monotonic()
            if left > 0:
                return left
            self._write_waiting()
            return None

    def close(self) -> str:
        """No more text from this attempt: write what waits; the text of the attempt."""
        with self._lock:
            if not self._closed:
                self._write_waiting(force=True)
                self._closed = True
            return "".join(self._pieces)

    def cancelled(self) -> None:
        """The final entry of a cancelled reply, holding the text written so far."""
        partial = self.close()
        self._write([(CANCELLED, {"task_id": self.task_id, "partial": partial})], final=True)

    def _write_waiting(self, *, force: bool = False) -> None:
        # Called with the lock held.
        if not self._waiting:
            return
        if not force and self._entries >= settings.STREAM_MAX_EVENTS - RESERVED_ENTRIES:
            return  # near the bound: the rest waits for close() and goes out as one piece
        piece = "".join(self._waiting)
        self._waiting.clear()
        self._write([(DELTA, {"text": piece})], append=piece)

    def _write(
        self, events: list[tuple[str, dict]], *, partial: str | None = None, append: str = "", final: bool = False
    ) -> None:
        if self._broken:
            return
        retention = settings.STREAM_RETENTION_SECONDS
        pipe = redis_clients.client().pipeline(transaction=False)
        for event, data in events:
            fields: dict[FieldT, EncodableT] = {"event": event, "data": json.dumps(data, ensure_ascii=False)}
            pipe.xadd(self.key, fields, maxlen=settings.STREAM_MAX_EVENTS, approximate=True)
        if partial is not None:
            pipe.set(partial_key(self.task_id), partial, ex=retention)
        if append:
            pipe.append(partial_key(self.task_id), append)
        # Every write renews the retention, so an abandoned stream (a worker killed mid-reply)
        # expires too; the final write starts the last STREAM_RETENTION_SECONDS.
        pipe.expire(self.key, retention)
        pipe.expire(partial_key(self.task_id), retention)
        try:
            pipe.execute()
        except RedisError:
            self._fail(events[0][0])
            return
        self._entries += len(events)
        self._last_write = time.monotonic()
        if final:
            self._closed = True

    def _fail(self, what: str) -> None:
        self._broken = True
        logger.warning(
            "reply stream of %s: could not write %s; live readers fall back to the saved reply",
            self.task_id,
            what,
            exc_info=True,
        )


def finish(task_id: str, event: str) -> None:
    """The final entry of a reply that succeeded (`done`) or failed for good (`error`).

    Written after the result backend stored the outcome, so a reader that builds the /status
    document on seeing it finds the task finished.
    """
    key = stream_key(task_id)
    try:
        pipe = redis_clients.client().pipeline(transaction=False)
        pipe.xadd(key, {"event": event, "data": "{}"}, maxlen=settings.STREAM_MAX_EVENTS, approximate=True)
        pipe.expire(key, settings.STREAM_RETENTION_SECONDS)
        pipe.expire(partial_key(task_id), settings.STREAM_RETENTION_SECONDS)
        pipe.execute()
    except RedisError:
        logger.warning("reply stream of %s: could not write its end (%s)", task_id, event, exc_info=True)


def mark_retrying(task_id: str) -> None:
    """A status RETRY entry for a task retried before its reply started (no writer was open)."""
    key = stream_key(task_id)
    try:
        pipe = redis_clients.client().pipeline(transaction=False)
        fields: dict[FieldT, EncodableT] = {"event": STATUS, "data": json.dumps({"status": "RETRY"})}
        pipe.xadd(key, fields, maxlen=settings.STREAM_MAX_EVENTS, approximate=True)
        pipe.expire(key, settings.STREAM_RETENTION_SECONDS)
        pipe.execute()
    except RedisError:
        logger.warning("reply stream of %s: could not write RETRY", task_id, exc_info=True)


async def read_after(task_id: str, after: str, *, count: int = 1000) -> list[StreamEvent]:
    """Entries after the id `after` ("0-0": from the start), as they are now (no waiting)."""
    client = redis_clients.async_client()
    entries = await client.xrange(stream_key(task_id), min=f"({after}", max="+", count=count)
    return parse_entries(entries)


class Follower:
    """One reader's place in a task's stream, waiting for what comes next.

    The wait is shared (claw_ai.stream_readers): a thousand followers hold a few Redis
    connections, not a thousand. close() it when done.
    """

    def __init__(self, watch: stream_readers.Watch) -> None:
        self._watch = watch

    async def next(self, wait_seconds: float) -> list[StreamEvent]:
        """The entries after the last ones returned, waiting up to `wait_seconds` for the first ([]: none came)."""
        return parse_entries(await self._watch.entries(wait_seconds))

    def close(self) -> None:
        self._watch.close()


async def follow(task_id: str, after: str) -> Follower:
    """Follow the task's stream from after the entry id `after`."""
    return Follower(await stream_readers.watch(stream_key(task_id), after))


async def read_last(task_id: str) -> StreamEvent | None:
    client = redis_clients.async_client()
    found = parse_entries(await client.xrevrange(stream_key(task_id), count=1))
    return found[0] if found else None


async def read_all(task_id: str) -> list[StreamEvent]:
    client = redis_clients.async_client()
    return parse_entries(await client.xrange(stream_key(task_id)))
