"""/stats and /status never wait for worker discovery: a stale one is served, with its age, and refreshed behind."""

import threading
import time

import pytest
from django.core.cache import cache

from tasks_app import workers
from tasks_app.tasks.ai_tasks import generate_ai_response
from tests.support.waiting import wait_for
from tests.tasks_app.api.conftest import API

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

# A discovery waits the whole inspect timeout for replies: make it long enough to tell apart.
SLOW_INSPECT = 1.5


def refreshers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "worker-discovery"]


@pytest.fixture
def slow_discovery(settings):
    settings.WORKER_INSPECT_TIMEOUT = SLOW_INSPECT
    cache.delete_many([workers.DISCOVERY_KEY, workers.DISCOVERY_LOCK_KEY])
    yield
    for thread in refreshers():
        thread.join(SLOW_INSPECT + 5)


def timed_get(client, path: str) -> tuple[float, dict]:
    started = time.monotonic()
    body = client.get(path).json()
    return time.monotonic() - started, body


def test_stats_before_the_first_discovery_counts_the_live_workers(celery_worker, staff_client, slow_discovery):
    # when /stats is asked while no discovery was ever made (the first request after a start)
    elapsed, body = timed_get(staff_client, f"{API}/stats")

    # then it makes one, within the inspect timeout, and never says null workers while one is up
    assert elapsed < SLOW_INSPECT + 2
    assert body["workers"] >= 1
    assert body["workers_checked_at"] is not None
    assert celery_worker.name in workers.live_workers().queues

    # and the next request answers at once from that discovery
    elapsed, body = timed_get(staff_client, f"{API}/stats")
    assert elapsed < SLOW_INSPECT / 2
    assert body["workers"] >= 1


def test_a_stale_discovery_is_served_with_its_age_and_refreshed_once(celery_worker, staff_client, slow_discovery):
    # given a discovery a minute old that knew one (now gone) worker
    stale_at = time.time() - 60
    cache.set(workers.DISCOVERY_KEY, {"queues": {"gone@nowhere": ["default"]}, "at": stale_at}, 600)

    # when /stats is asked five times in a row
    answers = [timed_get(staff_client, f"{API}/stats") for _ in range(5)]

    # then every answer comes at once, with the stale count and the time it was true
    assert max(elapsed for elapsed, _ in answers) < SLOW_INSPECT / 2
    for _, body in answers:
        assert body["workers"] == 1
        assert abs(time.mktime(time.strptime(body["workers_checked_at"][:19], "%Y-%m-%dT%H:%M:%S")) - stale_at) < 2
    # and one refresh runs for all of them, not one per request
    assert len(refreshers()) <= 1

    # and once it is done, the answer is the live workers, checked just now
    def refreshed():
        live = workers.live_workers()
        return live if live.checked_at > stale_at + 30 else None

    live = wait_for(refreshed, timeout=SLOW_INSPECT + 10, what="the background refresh")
    assert celery_worker.name in live.queues
    assert "gone@nowhere" not in live.queues
    assert staff_client.get(f"{API}/stats").json()["workers"] == len(live.queues)


def test_status_explains_a_pending_task_from_a_stale_discovery_without_waiting(staff_client, settings, slow_discovery):
    # given a task waiting on a queue no worker consumes, and a discovery a minute old
    settings.TASK_PENDING_EXPLAIN_AFTER = 0
    cache.set(workers.DISCOVERY_KEY, {"queues": {"w@host": ["default"]}, "at": time.time() - 60}, 600)
    sent = generate_ai_response.apply_async(kwargs={"conversation_id": "c", "user_message": "m"}, queue="nobody_here")

    # when its status is asked
    elapsed, status = timed_get(staff_client, f"{API}/status/{sent.id}")

    # then the answer comes at once, explains the wait from what was seen, and says when it was seen
    assert elapsed < SLOW_INSPECT / 2
    assert "No live worker consumes queue nobody_here" in status["pending_reason"]
    assert "Workers as seen at" in status["pending_reason"]
