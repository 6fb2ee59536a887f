"""The default cache: Django's Redis cache, with shared clients and a one-trip counter.

Clients: Django's RedisCacheClient builds a new redis-py client for every cache call, and
redis-py's client constructor copies its table of ~200 response callbacks each time (the same
cost claw_ai.broker removes from kombu). A redis-py client is thread-safe (it takes a connection
from the pool for each command), so one per connection pool serves every call.

Counter: `count()` is what the submit throttle runs on every POST. Django's `add` and `incr` take
three round trips (`incr` checks that the key exists first); here it is one MULTI/EXEC.
"""

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient


class SharedClientRedisCacheClient(RedisCacheClient):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[object, object] = {}  # connection pool -> its client

    def get_client(self, key=None, *, write=False):
        # _get_connection_pool and _client are Django's own (not in django-stubs).
        pool = self._get_connection_pool(write)  # type: ignore[attr-defined]
        client = self._clients.get(pool)
        if client is None:
            # Two threads may both build one at first; either serves.
            client = self._clients[pool] = self._client(connection_pool=pool)  # type: ignore[attr-defined]
        return client


class RedisCache(DjangoRedisCache):
    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = SharedClientRedisCacheClient

    def count(self, key: str, timeout: int, version=None) -> int:
        """Add one to the counter at `key` and return it; a missing counter starts at 0 and
        expires `timeout` seconds after it was created. Atomic, in one round trip."""
        key = self.make_and_validate_key(key, version=version)
        # RedisCache._cache (Django's own, not in django-stubs) is the SharedClientRedisCacheClient.
        with self._cache.get_client(key, write=True).pipeline(transaction=True) as pipe:  # type: ignore[attr-defined]
            pipe.set(key, 0, ex=timeout, nx=True)
            pipe.incr(key)
            return pipe.execute()[1]
