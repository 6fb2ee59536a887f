"""Capacity shared by every worker of the cluster, counted in Redis: leases that expire.

Celery's own `rate_limit` is counted in each worker process, so four workers allow four times the
figure. Here every worker takes its share from the same Redis keys, in one Lua script per
decision (atomic, one round trip, Redis's clock for everyone):

- calls in flight: a sorted set of leases scored by their expiry. A worker renews its leases
  every third of the lease time; one that dies stops renewing and its leases expire, so a killed
  worker never holds capacity longer than the lease time.
- requests and tokens per window: sliding-window logs (sorted sets scored by the time of each
  request; a token entry is "lease id:tokens", corrected to the reported usage on release).
- a "paused until" time: the provider said 429 (or nothing left), and everyone waits, not only
  the task that was told.

Waiting does not spin: a refused acquirer learns how long until capacity may free up and sleeps
that long in BLPOP on a list every release pushes to, so a freed slot wakes a waiter at once.
The wait is bounded by the caller; past it CapacityUnavailable says how long to wait instead.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis
from django.conf import settings
from django.db import connection as db_connection

if TYPE_CHECKING:
    from collections.abc import Iterator

# Waiters wake at least this often to look again (a lease that expires pushes no wake-up).
MAX_SLEEP_SECONDS = 1.0
# Counted in the window a little longer than the provider counts it: our count starts when the
# lease is granted, the provider's when the request arrives, and a request delayed more than the
# next one (thread scheduling, a new connection) would otherwise land inside the provider's window.
WINDOW_MARGIN_SECONDS = 0.25
WINDOW_MARGIN_FRACTION = 0.02

_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id, max_calls, lease_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local max_requests, max_tokens = tonumber(ARGV[4]), tonumber(ARGV[5])
local window_ms, tokens = tonumber(ARGV[6]), tonumber(ARGV[7])
local paused = tonumber(redis.call('GET', KEYS[1]) or '0')
if paused > now then return {0, paused - now, 'paused'} end
if max_calls > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= max_calls then
    local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    return {0, tonumber(first[2]) - now, 'concurrency'}
  end
end
if max_requests > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - window_ms)
  if redis.call('ZCARD', KEYS[3]) >= max_requests then
    local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    return {0, tonumber(first[2]) + window_ms - now, 'requests'}
  end
end
if max_tokens > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - window_ms)
  local entries = redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES')
  local used = 0
  for i = 1, #entries, 2 do used = used + tonumber(string.match(entries[i], ':(%d+)$')) end
  -- One call bigger than the whole budget still runs, alone in its window.
  if used > 0 and used + tokens > max_tokens then
    local freed = 0
    for i = 1, #entries, 2 do
      freed = freed + tonumber(string.match(entries[i], ':(%d+)$'))
      if used - freed + tokens <= max_tokens or freed == used then
        return {0, tonumber(entries[i + 1]) + window_ms - now, 'tokens'}
      end
    end
  end
end
if max_calls > 0 then
  redis.call('ZADD', KEYS[2], now + lease_ms, id)
  redis.call('PEXPIRE', KEYS[2], lease_ms * 2)
end
if max_requests > 0 then
  redis.call('ZADD', KEYS[3], now, id)
  redis.call('PEXPIRE', KEYS[3], window_ms * 2)
end
if max_tokens > 0 then
  redis.call('ZADD', KEYS[4], now, id .. ':' .. tokens)
  redis.call('PEXPIRE', KEYS[4], window_ms * 2)
end
return {1, 0, ''}
"""

# Give the call's slot back, correct its token entry to what was used, wake one waiter.
_RELEASE = """
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[3] ~= '' then
  local score = redis.call('ZSCORE', KEYS[2], ARGV[1] .. ':' .. ARGV[2])
  if score then
    redis.call('ZREM', KEYS[2], ARGV[1] .. ':' .. ARGV[2])
    redis.call('ZADD', KEYS[2], score, ARGV[1] .. ':' .. ARGV[3])
  end
end
redis.call('RPUSH', KEYS[3], '1')
redis.call('LTRIM', KEYS[3], -1000, -1)
redis.call('PEXPIRE', KEYS[3], 60000)
return 1
"""

# Push the expiry of the leases still held (XX: a lease already expired and removed stays gone).
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2)
return 1
"""

# Everyone waits until at least `now + ms` (a later pause already set wins).
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ms > current then redis.call('SET', KEYS[1], until_ms, 'PX', tonumber(ARGV[1]) + 1000) end
redis.call('RPUSH', KEYS[2], '1')
redis.call('PEXPIRE', KEYS[2], 60000)
return until_ms - now
"""


@dataclass(frozen=True)
class Capacity:
    """What one kind of work may use across the whole cluster; None = no limit."""

    name: str
    max_concurrent: int | None = None
    max_requests: int | None = None
    max_tokens: int | None = None
    window_seconds: float = 60.0
    lease_seconds: float = 30.0

    @property
    def limited(self) -> bool:
        return bool(self.max_concurrent or self.max_requests or self.max_tokens)

    def key(self, part: str) -> str:
        return f"claw:capacity:{self.name}:{part}"


@dataclass
class Lease:
    capacity: Capacity
    id: str
    tokens: int  # reserved in the token window
    tokens_used: int | None = None  # what the work reported, set before release


class CapacityUnavailable(Exception):
    """No capacity within the wait allowed: try again in `retry_after` seconds."""

    def __init__(self, capacity: Capacity, *, reason: str, retry_after: float) -> None:
        self.capacity = capacity
        self.reason = reason
        self.retry_after = retry_after
        super().__init__(
            f"waiting: {capacity.name} capacity ({reason}); shared by the whole cluster, "
            f"free again in about {retry_after:.1f} s"
        )


@functools.cache
def _client(url: str) -> redis.Redis:
    # One thread-safe client per process and URL; redis-py resets its pool in a forked child.
    return redis.Redis.from_url(url)


def client() -> redis.Redis:
    return _client(settings.REDIS_URL)


@functools.cache
def _script(source: str, url: str):
    return _client(url).register_script(source)


def _run(source: str, keys: list[str], args: list) -> Any:  # the Lua script's reply: its shape is the script's
    return _script(source, settings.REDIS_URL)(keys=keys, args=args)


def try_acquire(capacity: Capacity, *, tokens: int = 0) -> tuple[Lease | None, float, str]:
    """A lease if there is capacity now; else None, the seconds until there may be, and why."""
    lease = Lease(capacity, uuid.uuid4().hex, max(0, int(tokens)))
    window_ms = int(capacity.window_seconds * 1000 * (1 + WINDOW_MARGIN_FRACTION) + WINDOW_MARGIN_SECONDS * 1000)
    granted, wait_ms, reason = _run(
        _ACQUIRE,
        [capacity.key("paused"), capacity.key("calls"), capacity.key("requests"), capacity.key("tokens")],
        [
            lease.id,
            capacity.max_concurrent or 0,
            int(capacity.lease_seconds * 1000),
            capacity.max_requests or 0,
            capacity.max_tokens or 0,
            window_ms,
            lease.tokens,
        ],
    )
    if granted:
        if capacity.max_concurrent:
            _renewer().hold(lease)
        return lease, 0.0, ""
    return None, max(0.01, int(wait_ms) / 1000), reason.decode() if isinstance(reason, bytes) else str(reason)


def acquire(capacity: Capacity, *, tokens: int = 0, wait_seconds: float) -> Lease:
    """A lease, waiting at most `wait_seconds` for one; else CapacityUnavailable."""
    deadline = time.monotonic() + wait_seconds
    while True:
        lease, wait, reason = try_acquire(capacity, tokens=tokens)
        if lease is not None:
            return lease
        left = deadline - time.monotonic()
        # A call in flight may end at any moment (its lease expiry is only the latest); the
        # other waits are known to the millisecond, and one longer than ours is not sat out.
        frees_any_moment = reason == "concurrency"
        if left <= 0 or (not frees_any_moment and wait > left + MAX_SLEEP_SECONDS):
            # Hand the worker slot back: the caller re-queues the work for when it may run.
            retry_after = min(wait, MAX_SLEEP_SECONDS) if frees_any_moment else wait
            raise CapacityUnavailable(capacity, reason=reason, retry_after=retry_after)
        if settings.DB_POOL_MAX_SIZE:
            # Give a pooled database connection back while waiting, for the tasks that can work.
            db_connection.close()
        # Sleep until capacity may be free, or a release wakes us.
        client().blpop([capacity.key("released")], timeout=max(0.01, min(wait, left, MAX_SLEEP_SECONDS)))


def release(lease: Lease, *, tokens_used: int | None = None) -> None:
    """Give the lease back; `tokens_used` (the provider's report) replaces the estimate it reserved."""
    capacity = lease.capacity
    if not capacity.limited:
        return
    _renewer().drop(lease)
    corrected = "" if tokens_used is None or not capacity.max_tokens else str(max(0, int(tokens_used)))
    _run(
        _RELEASE,
        [capacity.key("calls"), capacity.key("tokens"), capacity.key("released")],
        [lease.id, lease.tokens, corrected],
    )


@contextmanager
def held(capacity: Capacity, *, tokens: int = 0, wait_seconds: float) -> Iterator[Lease]:
    lease = acquire(capacity, tokens=tokens, wait_seconds=wait_seconds)
    try:
        yield lease
    finally:
        release(lease, tokens_used=lease.tokens_used)


def take_task_rate(task_name: str, *, wait_seconds: float) -> None:
    """Count one run of `task_name` against its CLUSTER_TASK_RATE_LIMITS entry (no-op without one).

    Raises CapacityUnavailable when the cluster ran as many as the rate allows in its window.
    """
    rate = settings.CLUSTER_TASK_RATE_LIMITS.get(task_name)
    if rate:
        count, window = rate
        capacity = Capacity(name=f"task-rate:{task_name}", max_requests=count, window_seconds=window)
        acquire(capacity, wait_seconds=wait_seconds)


def pause(capacity: Capacity, seconds: float) -> float:
    """Make every worker wait `seconds` before its next acquisition (a later pause already set wins)."""
    return int(_run(_PAUSE, [capacity.key("paused"), capacity.key("released")], [max(1, int(seconds * 1000))])) / 1000


def in_use(capacity: Capacity) -> int:
    """Leases held now (for tests and the admin)."""
    now_ms = int(time.time() * 1000)
    return client().zcount(capacity.key("calls"), now_ms, "+inf")


class _Renewer:
    """One daemon thread per process that keeps this process's leases alive."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.leases: dict[str, Lease] = {}
        self.lock = threading.Lock()
        self.changed = threading.Event()
        self.thread: threading.Thread | None = None

    def hold(self, lease: Lease) -> None:
        with self.lock:
            known = any(held.capacity == lease.capacity for held in self.leases.values())
            self.leases[lease.id] = lease
            if not known:
                self.changed.set()  # perhaps a shorter lease time: work out the interval again
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="capacity-lease-renewer", daemon=True)
                self.thread.start()

    def drop(self, lease: Lease) -> None:
        with self.lock:
            self.leases.pop(lease.id, None)

    def _run(self) -> None:
        while True:
            with self.lock:
                by_capacity: dict[Capacity, list[str]] = {}
                for lease in self.leases.values():
                    by_capacity.setdefault(lease.capacity, []).append(lease.id)
            interval = min((c.lease_seconds for c in by_capacity), default=3.0) / 3
            for capacity, ids in by_capacity.items():
                # Redis away: the leases may lapse, which errs towards fewer calls, not more.
                with contextlib.suppress(redis.RedisError):
                    _run(_RENEW, [capacity.key("calls")], [int(capacity.lease_seconds * 1000), *ids])
            self.changed.wait(interval)
            self.changed.clear()


_renewers: dict[int, _Renewer] = {}


def _renewer() -> _Renewer:
    # Keyed by pid: a forked pool child starts its own thread (threads do not survive a fork).
    pid = os.getpid()
    renewer = _renewers.get(pid)
    if renewer is None:
        renewer = _renewers[pid] = _Renewer()
    return renewer
