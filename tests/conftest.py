import pytest
import redis
from django.conf import settings
from django.core.servers.basehttp import WSGIServer

from claw_ai.celery import celery_app
from tests.factories import UserFactory
from tests.support import flush, processes, rabbitmq, workers
from tests.support.broker import broker_at
from tests.support.settling import settle_workers
from tests.support.workers import Worker

# The live server (pytest-django's, Django's WSGIServer) listens with a backlog of 10: 50 clients
# connecting at once overflow it, and the kernel then drops or resets some of their connections.
# gunicorn, which serves production, listens with 2048.
WSGIServer.request_queue_size = 128

# Fixtures that start a Celery worker process or another process of the system (beat; a browser
# on a live server): a test using one is marked `worker`, and `make test-fast` (-m "not worker")
# leaves it out. Modules that start processes themselves carry the marker in their pytestmark.
# An unmarked test that starts a process through tests/support/processes.py fails, saying so.
PROCESS_FIXTURES = frozenset(
    {
        "celery_worker",
        "start_worker",
        "consume_queue",
        "llm_worker",
        "stream_worker",
        "web_server",
        "server_without_redis",
        "server_with_quick_keepalive",
        "live_server",
    }
)


# The longest files (measured, 2026-12-03, once the lifeline's waits and the fuzz's empty negative
# passes were cut) go first: pytest-xdist hands files out in collection order, and one of these
# started last kept one process busy for minutes after the other had finished.
LONGEST_FIRST = (
    "reliability/test_node_crash.py",
    "reliability/test_concurrent_clients.py",
    "foundation/test_make_run_other_terminal.py",
    "reliability/test_broker_restart.py",
    "reliability/test_beat_lease.py",
    "conversations/test_provider_limits_cluster.py",
    "conversations/test_admission.py",
    "reliability/test_worker_crashes.py",
    "conversations/test_chat_browser.py",
    "reliability/test_schema_fuzz.py",
    "reliability/test_schema_fuzz_user.py",
    "reliability/test_fresh_deploy.py",
    "foundation/test_container_entrypoint.py",
)


def _start_rank(item: pytest.Item) -> int:
    path = item.nodeid.split("::")[0].removeprefix("tests/")
    return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.worker)
    items.sort(key=_start_rank)  # stable: the rest keep their order


def pytest_runtest_setup(item: pytest.Item) -> None:
    processes.may_start_processes = item.get_closest_marker("worker") is not None


# Transactional tests end with a flush of only what they wrote (tests/support/flush.py), not Django's
# TRUNCATE of every table and post_migrate: 0.4-3 s less per test, for 400-odd tests.
flush.install()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's test database, and the rows migrate left in it (what each flush restores)."""
    with django_db_blocker.unblock():
        flush.remember_baseline()


@pytest.fixture(scope="session", autouse=True)
def _empty_test_broker():
    """The test Redis database starts empty, so no queued message from an earlier run leaks in."""
    redis.Redis.from_url(settings.REDIS_URL).flushdb()


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker):
    """One real worker on all four queues for the whole session."""
    with django_db_blocker.unblock():
        worker = Worker(concurrency=4).wait_ready()
    workers.session_worker = worker
    yield worker
    workers.session_worker = None
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


@pytest.fixture(autouse=True)
def _workers_idle_before_flush(request):
    """Runs its teardown before pytest-django flushes the database of a transactional test."""
    if not _transactional(request):
        yield
        return
    request.getfixturevalue("_django_db_helper")
    yield
    settle_workers(redis.Redis.from_url(settings.REDIS_URL))
