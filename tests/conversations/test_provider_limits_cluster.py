"""The provider's limits held by two real workers together, against a loopback provider that
enforces limits of its own (answering 429 past them) and counts the calls it sees at once.

The workers share one configuration for the module: 5 calls at once, and 600 requests a minute
counted over a 2-second window (20 per 2 s) so a burst of 100 takes seconds, not minutes; the
provider is set to the same figures. Leases last 3 s; a task waits at most 2 s in its slot.
"""

import json
import time

import pytest

from conversations.provider_limits import provider_limits
from tasks_app import cluster_limits
from tasks_app.models import TaskRecord, TaskState
from tasks_app.tasks.ai_tasks import generate_ai_response
from tests.support.fake_llm import FakeLLM, answer, slow
from tests.support.waiting import wait_for
from tests.support.workers import Worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.worker]

QUEUE = "test_llm_limits"
DOOMED_QUEUE = "test_llm_limits_doomed"
LEASE_SECONDS = 3
LIMITS = {
    "LLM_PROVIDER": "openai",
    "LLM_API_KEY": "sk-test",
    "LLM_MODEL": "gpt-4o-mini",
    "LLM_TIMEOUT": "90",
    "LLM_MAX_CONCURRENT_CALLS": "5",
    "LLM_REQUESTS_PER_MINUTE": "600",
    "LLM_RATE_WINDOW_SECONDS": "2",
    "LLM_CAPACITY_LEASE_SECONDS": str(LEASE_SECONDS),
    "LLM_CAPACITY_WAIT_SECONDS": "2",
    # Threads share a few pooled connections (the machine's PostgreSQL serves other test runs too).
    "DJANGO_DB_POOL_MAX_SIZE": "4",
}


@pytest.fixture(scope="module")
def provider():
    server = FakeLLM()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def two_workers(provider, django_db_setup, django_db_blocker):
    """Two worker processes of 8 threads each: 16 slots for 5 calls at once."""
    with django_db_blocker.unblock():
        workers = [
            Worker(queues=[QUEUE], pool="threads", concurrency=8, env={**LIMITS, "LLM_BASE_URL": provider.base_url})
            for _ in range(2)
        ]
        for worker in workers:
            worker.wait_ready()
    yield workers
    for worker in workers:
        worker.stop(graceful=False)


@pytest.fixture(autouse=True)
def fresh_capacity(redis_client):
    for key in redis_client.scan_iter("claw:capacity:*"):
        redis_client.delete(key)


def send_replies(count: int, *, queue: str = QUEUE, conversation: str = "conv_limits") -> list[str]:
    return [
        generate_ai_response.apply_async(
            kwargs={"conversation_id": f"{conversation}_{n}", "user_message": f"question {n}", "user_id": "u1"},
            queue=queue,
        ).id
        for n in range(count)
    ]


def all_succeeded(task_ids: list[str], *, timeout: float) -> None:
    def done():
        states = dict(TaskRecord.objects.filter(task_id__in=task_ids).values_list("task_id", "state"))
        failed = [task_id for task_id, state in states.items() if state == TaskState.FAILURE]
        assert not failed, TaskRecord.objects.filter(task_id__in=failed).values_list("error", flat=True)[:3]
        return sum(state == TaskState.SUCCESS for state in states.values()) == len(task_ids)

    wait_for(done, timeout=timeout, interval=0.2, what=f"{len(task_ids)} replies to succeed")


def test_the_provider_never_sees_more_calls_at_once_than_configured(two_workers, provider):
    # given a provider that refuses a sixth call in flight, each call taking 0.3 s
    provider.limit(concurrent=5)
    provider.script()
    provider.default = slow(0.3, answer("ok"))

    # when 30 replies are sent to the two workers (16 slots)
    task_ids = send_replies(30)

    # then all are answered, the provider never saw more than 5 at once (it did see 5), and no 429
    all_succeeded(task_ids, timeout=60)
    assert provider.max_in_flight == 5
    assert provider.rate_limited == 0


def test_a_burst_within_the_providers_request_rate_gets_no_429(two_workers, provider):
    # given a provider that answers 429 past 20 requests in any 2 s (600 a minute, on a 2 s clock)
    provider.limit(requests=20, window=2)
    provider.script()
    provider.default = answer("ok")

    # when a burst of 100 replies is sent
    task_ids = send_replies(100, conversation="conv_burst")

    # then every reply is answered and the provider refused none (the first at most)
    all_succeeded(task_ids, timeout=90)
    assert provider.rate_limited <= 1
    # and the cluster used the rate: 100 requests at 10 a second take about 10 s, not 30
    arrivals = [request.at for request in provider.requests]
    assert arrivals[-1] - arrivals[0] < 20


def test_a_task_waiting_for_capacity_gives_its_slot_back_and_its_record_says_why(two_workers, provider, settings):
    # given the five calls' capacity all held (by this process, as a busy cluster would)
    provider.limit()
    provider.script()  # forget the earlier tests' requests
    provider.default = answer("ok")
    settings.LLM_MAX_CONCURRENT_CALLS = 5
    settings.LLM_CAPACITY_LEASE_SECONDS = LEASE_SECONDS
    held = [cluster_limits.acquire(provider_limits(), wait_seconds=0) for _ in range(5)]

    # when a reply is sent
    (task_id,) = send_replies(1, conversation="conv_waiting")

    # then after its bounded wait it is re-queued, its record saying what it waits for
    record = wait_for(
        lambda: TaskRecord.objects.filter(task_id=task_id, state=TaskState.RETRY).first(),
        timeout=15,
        what="the reply to be re-queued for capacity",
    )
    assert "waiting: llm capacity (concurrency)" in record.error
    assert not provider.requests
    # and once capacity frees up it runs
    for lease in held:
        cluster_limits.release(lease)
    all_succeeded([task_id], timeout=30)


def test_a_killed_worker_gives_its_capacity_back_within_the_lease_time(
    two_workers, provider, redis_client, django_db_blocker
):
    # given a third worker holding all five calls on a provider that never answers
    provider.limit()
    provider.script()  # forget the earlier tests' requests
    provider.default = answer("ok")
    stuck_provider = FakeLLM()
    stuck_provider.default = slow(120, answer("never"))
    with django_db_blocker.unblock():
        doomed = Worker(
            queues=[DOOMED_QUEUE],
            pool="threads",
            concurrency=5,
            env={**LIMITS, "LLM_BASE_URL": stuck_provider.base_url},
        ).wait_ready()
    try:
        send_replies(5, queue=DOOMED_QUEUE, conversation="conv_doomed")
        wait_for(lambda: len(stuck_provider.requests) == 5, timeout=30, what="the doomed worker's five calls")
        # and a reply for the two workers, waiting for capacity
        (task_id,) = send_replies(1, conversation="conv_after_kill")
        wait_for(
            lambda: TaskRecord.objects.filter(task_id=task_id, state__in=["STARTED", "RETRY"]).exists(),
            timeout=15,
            what="the reply to start waiting",
        )
        assert not provider.requests

        # when the third worker is SIGKILLed, its calls in flight
        doomed.kill()
        killed_at = time.monotonic()

        # then the waiting reply reaches the provider within the lease time
        all_succeeded([task_id], timeout=30)
        waited = provider.requests[0].at - killed_at
        print(f"capacity back {waited:.2f} s after the kill (lease {LEASE_SECONDS} s)")
        assert 0 < waited <= LEASE_SECONDS + 2
    finally:
        doomed.stop()
        stuck_provider.stop()
        forget_unacked(redis_client, DOOMED_QUEUE)


def forget_unacked(client, queue: str) -> None:
    """Drop the dead worker's unacknowledged messages (nothing consumes their queue any more)."""
    for tag, raw in client.hgetall("unacked").items():
        _message, _exchange, routing_key = json.loads(raw)
        if routing_key == queue:
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)
