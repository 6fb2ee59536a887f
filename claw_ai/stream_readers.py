"""Waiting on many Redis streams with few connections: one XREAD BLOCK serves many watchers.

A blocking XREAD holds its connection while it blocks, so one read per open stream costs one
Redis connection per watcher: a thousand watchers, a thousand connections per web process
(issue 14). Here each event loop has at most STREAM_READERS readers. A reader holds one
connection (named READER_CLIENT_NAME, as CLIENT LIST shows it) and XREADs the keys of all its
watches at once (XREAD takes many keys), from the earliest place any of them waits at; each new
entry goes to the queues of the watches that have not seen it. A watch keeps its own place, so a
watcher that resumes from an older entry id gets exactly the entries after it.

A watch joins the reader that has the fewest, a new reader while there are fewer than
STREAM_READERS (so a few watchers each have their own, and many share). One that joins a reader
blocked on other keys wakes it (CLIENT UNBLOCK, from the shared command connections), so the
reader takes the new key at once; in the rare race where the wake reaches Redis before the
reader's XREAD does, the new key waits for that read's end (BLOCK_MS). A reader whose last watch
left is woken the same way and ends, closing its connection: a watcher that left costs nothing
after that. A read that fails (Redis down) fails every watch of its reader; the next
watch starts a new reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref

import redis.asyncio
from django.conf import settings
from redis.exceptions import RedisError

from claw_ai import redis_clients

logger = logging.getLogger(__name__)

READER_CLIENT_NAME = "claw-stream-reader"
# How long one XREAD blocks (a wake-up that missed it waits at most this long).
BLOCK_MS = 1000
# Entries one read takes from each stream (the rest come with the next read).
COUNT = 1000

_readers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[StreamReader]] = weakref.WeakKeyDictionary()


def entry_order(entry_id: str) -> tuple[int, int]:
    """A stream entry id ("1700000000000-3") as what orders it."""
    millis, _, sequence = entry_id.partition("-")
    return int(millis), int(sequence or 0)


class Watch:
    """One watcher's place in one stream: the entries after `after`, as the reader finds them."""

    def __init__(self, reader: StreamReader, key: str, after: str) -> None:
        self.key = key
        self.after = after  # the last entry handed to this watch (advanced by the reader)
        self._reader = reader
        self._found: asyncio.Queue[list] = asyncio.Queue()
        self._error: BaseException | None = None

    async def entries(self, wait_seconds: float) -> list:
        """The next entries (redis-py's [(id, fields)]), waiting up to `wait_seconds` for them; [] if none came.

        Raises the reader's error (RedisError, OSError) once the entries found before it are taken.
        """
        taken: list = []
        if self._found.empty() and self._error is None:
            try:
                async with asyncio.timeout(wait_seconds):
                    taken.extend(await self._found.get())
            except TimeoutError:
                return []
        while not self._found.empty():
            taken.extend(self._found.get_nowait())
        if not taken and self._error is not None:
            raise self._error
        return taken

    def close(self) -> None:
        self._reader.leave(self)

    def _hand(self, entries: list) -> None:
        self.after = entries[-1][0].decode()
        self._found.put_nowait(entries)

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self._found.put_nowait([])  # wakes a waiting entries()


class StreamReader:
    """One connection XREADing the streams of many watches."""

    def __init__(self, readers: list[StreamReader]) -> None:
        self._readers = readers
        self._by_key: dict[str, set[Watch]] = {}
        self._reading: dict[str, str] | None = None  # the keys and places of the XREAD under way
        self._client_id: int | None = None
        self._waking: set[asyncio.Task] = set()  # wake-ups under way (the loop keeps only weak references)
        self._client = redis.asyncio.Redis.from_url(
            settings.REDIS_URL,
            single_connection_client=True,
            client_name=READER_CLIENT_NAME,
            socket_connect_timeout=redis_clients.REDIS_CLIENT_TIMEOUT,
            socket_timeout=BLOCK_MS / 1000 + redis_clients.REDIS_CLIENT_TIMEOUT,
        )
        self._task = asyncio.get_running_loop().create_task(self._run())

    def __len__(self) -> int:
        return sum(len(watches) for watches in self._by_key.values())

    def join(self, watch: Watch) -> bool:
        """Add `watch`; whether the read under way must be woken to take it."""
        self._by_key.setdefault(watch.key, set()).add(watch)
        reading = self._reading
        return reading is not None and (
            watch.key not in reading or entry_order(watch.after) < entry_order(reading[watch.key])
        )

    async def wake(self) -> None:
        if self._client_id is None:
            return
        with contextlib.suppress(RedisError, OSError):  # the read ends by itself within BLOCK_MS
            await redis_clients.async_client().client_unblock(self._client_id)

    def leave(self, watch: Watch) -> None:
        watches = self._by_key.get(watch.key)
        if watches is not None:
            watches.discard(watch)
            if not watches:
                del self._by_key[watch.key]
        if not self._by_key and self._reading is not None:
            # The last watch left: end the read now, so the connection closes at once (and a
            # watch that comes next does not join a reader on its way out).
            try:
                waking = asyncio.get_running_loop().create_task(self.wake())
            except RuntimeError:  # no loop running any more (shutting down): nothing to wake
                return
            self._waking.add(waking)
            waking.add_done_callback(self._waking.discard)

    async def _run(self) -> None:
        try:
            self._client_id = await self._client.client_id()
            while self._by_key:
                places = self._places()
                self._reading = places
                try:
                    found = await self._client.xread(places, count=COUNT, block=BLOCK_MS)  # type: ignore[arg-type]
                finally:
                    self._reading = None
                # RESP2 (our clients) answers [[key, entries]]; RESP3 a dict.
                for key, entries in found.items() if isinstance(found, dict) else found or []:
                    self._hand_out(key.decode() if isinstance(key, bytes) else key, entries)
        except Exception as error:  # Redis down (RedisError, OSError), or a bug: no watch may wait forever
            if not isinstance(error, RedisError | OSError):
                logger.exception("stream reader failed")
            for watches in self._by_key.values():
                for watch in watches:
                    watch._fail(error)
        finally:
            # No await before this: a watch that joins from now on finds a new reader.
            self._readers.remove(self)
            await self._client.aclose()

    def _places(self) -> dict[str, str]:
        """Each key at the earliest place a watch of it waits at."""
        return {key: min((watch.after for watch in watches), key=entry_order) for key, watches in self._by_key.items()}

    def _hand_out(self, key: str, entries: list) -> None:
        for watch in self._by_key.get(key, ()):
            after = entry_order(watch.after)
            new = [entry for entry in entries if entry_order(entry[0].decode()) > after]
            if new:
                watch._hand(new)


async def watch(key: str, after: str) -> Watch:
    """Follow the stream `key` from after the entry id `after`; close() the watch when done."""
    readers = _readers.setdefault(asyncio.get_running_loop(), [])
    reader = min(readers, key=len, default=None)
    if reader is None or (len(reader) and len(readers) < settings.STREAM_READERS):
        reader = StreamReader(readers)
        readers.append(reader)
    followed = Watch(reader, key, after)
    if reader.join(followed):
        await reader.wake()
    return followed
