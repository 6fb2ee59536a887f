"""The default cache (claw_ai.cache): Django's Redis cache with shared clients and an atomic counter."""

import uuid
from concurrent.futures import ThreadPoolExecutor

from django.core.cache import cache
from django.core.cache.backends.locmem import LocMemCache

from claw_ai.throttles import WriteRateThrottle


def a_key() -> str:
    return f"test-count-{uuid.uuid4().hex}"


def test_every_cache_call_uses_one_shared_client():
    client = cache._cache.get_client(write=True)

    assert cache._cache.get_client(write=True) is client
    # and the cache still works through it
    key = a_key()
    cache.set(key, {"a": 1}, timeout=10)
    assert cache.get(key) == {"a": 1}


def test_count_starts_at_one_and_expires_with_its_timeout(redis_client):
    key = a_key()

    assert [cache.count(key, timeout=30) for _ in range(3)] == [1, 2, 3]

    # the counter carries the timeout it was created with (a later count does not extend it)
    assert 0 < redis_client.ttl(cache.make_key(key)) <= 30
    # and Django's own API reads it
    assert cache.get(key) == 3


def test_concurrent_counts_are_never_lost_or_doubled():
    key = a_key()

    with ThreadPoolExecutor(16) as pool:
        values = list(pool.map(lambda _: cache.count(key, timeout=30), range(800)))

    assert sorted(values) == list(range(1, 801))


def test_the_throttle_counts_in_any_other_cache_too():
    # a deployment that configures another cache backend keeps a working throttle
    throttle = WriteRateThrottle()
    throttle.cache = LocMemCache(f"throttle-{uuid.uuid4().hex}", {})

    assert [throttle._count("user-1:window", timeout=60) for _ in range(3)] == [1, 2, 3]
