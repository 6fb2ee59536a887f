import pytest
import redis
from django.conf import settings

from claw_ai.celery import celery_app
from tests.factories import UserFactory
from tests.support import rabbitmq
from tests.support.broker import broker_at
from tests.support.waiting import wait_for
from tests.support.workers import Worker

# Fixtures that start a Celery worker process or another process of the system (beat; a browser
# on a live server): a test using one is marked `worker`, and `make test-fast` (-m "not worker")
# leaves it out. Modules that start processes themselves carry the marker in their pytestmark.
PROCESS_FIXTURES = frozenset({"celery_worker", "start_worker", "consume_queue", "llm_worker", "beat", "live_server"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.worker)


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
    worker.stop(graceful=False)


@pytest.fixture
def consume_queue(celery_worker):
    """Have the session's worker consume a queue of the test's own, until the test ends.

    For tests that need a worker on a private queue and nothing special about it: adding a
    consumer costs one remote-control round trip, a worker process of its own 5-10 s. Tests that
    kill, freeze or shut down a worker, or need its env, pool or concurrency, use start_worker.
    """
    added: list[str] = []

    def consume(queue: str) -> Worker:
        replies = celery_app.control.add_consumer(queue, destination=[celery_worker.name], reply=True, timeout=5)
        assert replies, replies
        assert "ok" in replies[0][celery_worker.name], replies
        added.append(queue)
        return celery_worker

    yield consume
    for queue in added:
        celery_app.control.cancel_consumer(queue, destination=[celery_worker.name], reply=True, timeout=5)


@pytest.fixture
def start_worker(django_db_blocker):
    """Start extra workers for one test; each is ended at the end of the test (no graceful end needed)."""
    started: list[Worker] = []

    def start(**options) -> Worker:
        with django_db_blocker.unblock():
            worker = Worker(**options)
            started.append(worker)
            return worker.wait_ready()

    yield start
    for worker in started:
        worker.stop(graceful=False)


@pytest.fixture(scope="session")
def rabbitmq_run_url():
    """A virtual host of this test run on RabbitMQ (tests.support.rabbitmq), or a skip saying why not."""
    run = rabbitmq.rabbitmq_for_this_run()
    if run.url is None:
        print(f"\nRabbitMQ tests skipped: {run.reason}")
        pytest.skip(run.reason)
    yield run.url
    run.delete()


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request, monkeypatch):
    """The broker-level end-to-end tests run on both brokers: this test process and the workers it
    starts (they inherit CELERY_BROKER_URL) use the one named by the parameter."""
    if request.param == "redis":
        yield request.param
        return
    url = request.getfixturevalue("rabbitmq_run_url")
    # broker_at first: it saves the settings' URL, which Celery reads from CELERY_BROKER_URL when set
    with broker_at(url):
        monkeypatch.setenv("CELERY_BROKER_URL", url)
        yield request.param
        monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
        monkeypatch.undo()


# Two ordinary API users, i.e. two tenants.
@pytest.fixture
def alice(db):
    return UserFactory(username="alice")


@pytest.fixture
def bob(db):
    return UserFactory(username="bob")


@pytest.fixture
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def _transactional(request) -> bool:
    marker = request.node.get_closest_marker("django_db")
    return bool(marker and marker.kwargs.get("transaction")) or "transactional_db" in request.fixturenames


def settle_workers(client: redis.Redis, timeout: float = 30) -> None:
    """Leave no task running: drop queued messages, forget delayed ones, wait for running ones.

    A task still running when pytest-django truncates the tables deadlocks with the TRUNCATE (or
    writes rows into the next test). With late acks every message a worker holds is in kombu's
    `unacked` hash, so an empty hash means no worker is busy: the common case costs one call.
    """
    if not client.hlen("unacked"):
        return
    celery_app.control.purge()
    inspector = celery_app.control.inspect(timeout=0.5)
    delayed = [entry["request"]["id"] for entries in (inspector.scheduled() or {}).values() for entry in entries]
    if delayed:
        celery_app.control.revoke(delayed)
    wait_for(
        lambda: not any((inspector.active() or {}).values()),
        timeout=timeout,
        what="workers to finish their running tasks before the database is flushed",
    )


@pytest.fixture(autouse=True)
def _workers_idle_before_flush(request):
    """Runs its teardown before pytest-django flushes the database of a transactional test."""
    if not _transactional(request):
        yield
        return
    request.getfixturevalue("_django_db_helper")
    yield
    settle_workers(redis.Redis.from_url(settings.REDIS_URL))
