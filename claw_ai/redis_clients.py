"""Plain Redis clients on REDIS_URL, for data the cache API cannot hold (streams, appended text).

One sync client per process (redis-py's client is thread-safe: it takes a pooled connection per
command) and one asyncio client per event loop (an asyncio connection belongs to the loop that
opened it). Both give up connecting to an unreachable server within REDIS_CLIENT_TIMEOUT seconds,
so an API request answers 503 rather than hanging. The asyncio client serves the short commands
of open streams, on at most STREAM_COMMAND_CONNECTIONS connections (a burst of streams opening at
once waits its turn for one rather than opening one each); their blocking reads are
claw_ai.stream_readers'.
"""

from __future__ import annotations

import asyncio
import threading
import weakref

import redis
import redis.asyncio
from django.conf import settings

REDIS_CLIENT_TIMEOUT = 2.0
# How long an asyncio command waits for one of the STREAM_COMMAND_CONNECTIONS to be free. Longer
# than a connect: when all are busy Redis is up, only a burst of streams opening at once (200 in
# a second, measurement 6) queues on them; a Redis that is down fails each attempt within
# REDIS_CLIENT_TIMEOUT, so the pool never stays full for this long.
POOL_WAIT_SECONDS = 10.0
# The asyncio client's connections, as CLIENT LIST names them.
ASYNC_CLIENT_NAME = "claw-stream-commands"

_lock = threading.Lock()
_sync: dict[str, redis.Redis] = {}
# loop -> (REDIS_URL, its client)
_async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[str, redis.asyncio.Redis]] = (
    weakref.WeakKeyDictionary()
)


def client() -> redis.Redis:
    url = settings.REDIS_URL
    found = _sync.get(url)
    if found is None:
        with _lock:
            found = _sync.get(url) or redis.Redis.from_url(
                url, socket_connect_timeout=REDIS_CLIENT_TIMEOUT, socket_timeout=REDIS_CLIENT_TIMEOUT
            )
            _sync[url] = found
    return found


def async_client() -> redis.asyncio.Redis:
    """This event loop's client (its connections are opened and used on this loop only)."""
    loop, url = asyncio.get_running_loop(), settings.REDIS_URL
    found = _async.get(loop)
    if found is None or found[0] != url:
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            max_connections=settings.STREAM_COMMAND_CONNECTIONS,
            timeout=POOL_WAIT_SECONDS,  # waiting for a free connection, then ConnectionError
            client_name=ASYNC_CLIENT_NAME,
            socket_connect_timeout=REDIS_CLIENT_TIMEOUT,
            socket_timeout=REDIS_CLIENT_TIMEOUT,
        )
        made = redis.asyncio.Redis(connection_pool=pool)
        found = _async[loop] = (url, made)
    return found[1]
