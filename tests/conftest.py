import pytest
import redis
from django.conf import settings

from tests.support.workers import Worker


@pytest.fixture(scope="session", autouse=True)
def _empty_test_broker():
    """The test Redis database starts empty, so no queued message from an earlier run leaks in."""
    redis.Redis.from_url(settings.REDIS_URL).flushdb()


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker):
    """One real worker on all four queues for the whole session."""
    with django_db_blocker.unblock():
        worker = Worker(concurrency=4).wait_ready()
    yield worker
    worker.stop()


@pytest.fixture
def start_worker(django_db_blocker):
    """Start extra workers for one test; each is stopped at the end of the test."""
    started: list[Worker] = []

    def start(**options) -> Worker:
        with django_db_blocker.unblock():
            worker = Worker(**options)
            started.append(worker)
            return worker.wait_ready()

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)
