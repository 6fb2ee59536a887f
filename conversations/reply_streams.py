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

import functools
import json
import logging
import os
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
    raw_data: bytes  # the entry's `data` field: JSON, as written (the endpoint sends it on as it is)

    @functools.cached_property
    def data(self) -> dict:
        return json.loads(self.raw_data or b"{}")

    @property
    def is_final(self) -> bool:
        return self.event in FINAL_EVENTS


def parse_entries(entries) -> list[StreamEvent]:
    """redis-py's [(id, {field: value})] as events."""
    return [
        StreamEvent(id=entry_id.decode(), event=fields[b"event"].decode(), raw_data=fields.get(b"data") or b"{}")
        for entry_id, fields in entries
    ]


def text_sent(events: list[StreamEvent], after: str) -> str:
    """The text a reader that got every event up to the id `after` (from the stream's start) has."""
    last = stream_readers.entry_order(after)
    return text_of([event for event in events if stream_readers.entry_order(event.id) <= last])


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

    `text()` is called from the thread reading the provider; the pieces after the first wait for
    the process's flusher (below), which writes every reply's waiting text in one round trip.
    `close()` writes what is left, after any flush under way. A failing Redis never fails the
    reply: the writer logs it and stops writing (readers then finish from the saved Message).
    """

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.key = stream_key(task_id)
        self.flush_seconds = settings.STREAM_FLUSH_MS / 1000
        self.first_text_at: float | None = None  # time.monotonic() of the first piece
        self._lock = threading.Lock()
        self._pieces: list[str] = []  # every piece of this attempt, written or not
        self._waiting: list[str] = []  # pieces not written yet
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
            # The first piece goes out at once: it is what the reader waits longest for.
            if first or not self.flush_seconds:
                self._write_waiting()
                return
        _flusher().due(self)

    def close(self) -> str:
        """No more text from this attempt: write what waits; the text of the attempt."""
        with _flusher().writing, self._lock:  # after a flush under way, which may hold earlier pieces
            if not self._closed:
                self._write_waiting(force=True)
                self._closed = True
            return "".join(self._pieces)

    def cancelled(self) -> None:
        """The final entry of a cancelled reply, holding the text written so far."""
        partial = self.close()
        self._write([(CANCELLED, {"task_id": self.task_id, "partial": partial})], final=True)

    def _take(self) -> str | None:
        """The waiting text, for the flusher to write (None: nothing to write now)."""
        with self._lock:
            if self._closed or self._broken:
                return None
            piece = self._waiting_text(force=False)
            if piece is not None:
                self._entries += 1
            return piece

    def _write_waiting(self, *, force: bool = False) -> None:
        # Called with the lock held.
        piece = self._waiting_text(force=force)
        if piece is not None:
            self._write([(DELTA, {"text": piece})], append=piece)

    def _waiting_text(self, *, force: bool) -> str | None:
        """The pieces not written yet, taken as one (None: none, or near the bound and not `force`)."""
        # Called with the lock held.
        if not self._waiting:
            return None
        if not force and self._entries >= settings.STREAM_MAX_EVENTS - RESERVED_ENTRIES:
            return None  # near the bound: the rest waits for close() and goes out as one piece
        piece = "".join(self._waiting)
        self._waiting.clear()
        return piece

    def _write(
        self, events: list[tuple[str, dict]], *, partial: str | None = None, append: str = "", final: bool = False
    ) -> None:
        if self._broken:
            return
        retention = settings.STREAM_RETENTION_SECONDS
        pipe = redis_clients.client().pipeline(transaction=False)
        for event, data in events:
            add_entry(pipe, self.key, event, data)
        if partial is not None:
            pipe.set(partial_key(self.task_id), partial, ex=retention)
        if append:
            pipe.append(partial_key(self.task_id), append)
        if partial is not None or final:
            # The start sets the retention and the end starts the last STREAM_RETENTION_SECONDS;
            # a stream abandoned in between (its worker killed) expires that long after its start.
            pipe.expire(self.key, retention)
            pipe.expire(partial_key(self.task_id), retention)
        try:
            pipe.execute()
        except RedisError:
            self._fail(events[0][0])
            return
        self._entries += len(events)
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


def add_entry(pipe, key: str, event: str, data: dict) -> None:
    fields: dict[FieldT, EncodableT] = {"event": event, "data": json.dumps(data, ensure_ascii=False)}
    pipe.xadd(key, fields, maxlen=settings.STREAM_MAX_EVENTS, approximate=True)


class Flusher:
    """Writes the waiting text of every reply this process is writing, one round trip for all.

    A worker writing 100 replies at 30 tokens a second would otherwise make 2,000 round trips a
    second to Redis, one per reply every STREAM_FLUSH_MS, each costing ~0.2 ms of CPU in redis-py
    and the kernel: a whole core at 200 replies (bench/RESULTS.md, measurement 6). One thread per
    process wakes when a reply has text waiting, and writes what all replies have waiting at most
    every STREAM_FLUSH_MS. `writing` is held while a flush's pipeline runs, so a reply's close()
    comes after any of its pieces the flush took.
    """

    def __init__(self) -> None:
        self.writing = threading.Lock()
        self._due: set[ReplyStreamWriter] = set()
        self._ready = threading.Condition()
        self._last = 0.0
        threading.Thread(target=self._run, name="reply-stream-flusher", daemon=True).start()

    def due(self, writer: ReplyStreamWriter) -> None:
        with self._ready:
            if not self._due:
                self._ready.notify()
            self._due.add(writer)

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._due:
                    self._ready.wait()
            wait = self._last + settings.STREAM_FLUSH_MS / 1000 - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # pieces arriving meanwhile go out together
            self._last = time.monotonic()
            try:
                self.flush()
            except Exception:  # a bug here must not end the thread: every reply's stream would stop
                logger.exception("reply stream flush failed")

    def flush(self) -> None:
        with self._ready:
            writers, self._due = self._due, set()
        with self.writing:
            taken = [(writer, piece) for writer in writers if (piece := writer._take()) is not None]
            if not taken:
                return
            pipe = redis_clients.client().pipeline(transaction=False)
            for writer, piece in taken:
                add_entry(pipe, writer.key, DELTA, {"text": piece})
                pipe.append(partial_key(writer.task_id), piece)
            try:
                pipe.execute()
            except RedisError:
                for writer, _piece in taken:
                    writer._fail(DELTA)


_flushers: dict[int, Flusher] = {}  # by process id: a forked child starts its own thread
_flushers_lock = threading.Lock()


def _flusher() -> Flusher:
    pid = os.getpid()
    found = _flushers.get(pid)
    if found is None:
        with _flushers_lock:
            found = _flushers.get(pid)
            if found is None:
                found = _flushers[pid] = Flusher()
    return found


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
        add_entry(pipe, key, STATUS, {"status": "RETRY"})
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
