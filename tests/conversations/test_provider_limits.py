"""Cluster-wide capacity (tasks_app.cluster_limits, conversations.provider_limits) against real Redis.

These run in the test process; tests/conversations/test_provider_limits_cluster.py shows the same
limits held by two real workers against a loopback provider.
"""

import threading
import time

import pytest

from conversations.llm.base import Completion, ProviderRateLimited
from conversations.provider_limits import provider_capacity, provider_limits
from tasks_app import cluster_limits
from tasks_app.cluster_limits import Capacity, CapacityUnavailable
from tests.foundation.test_settings import run_python
from tests.support.waiting import wait_for

AI_TASK = "tasks_app.tasks.ai_tasks.generate_ai_response"


@pytest.fixture(autouse=True)
def fresh_capacity(redis_client):
    def forget():
        for key in redis_client.scan_iter("claw:capacity:*"):
            redis_client.delete(key)

    forget()
    yield
    forget()


def capacity(**limits) -> Capacity:
    return Capacity(name="test", **limits)


def test_calls_in_flight_are_bounded_and_a_release_frees_a_slot():
    # given two calls allowed at once, both taken
    limits = capacity(max_concurrent=2)
    first = cluster_limits.acquire(limits, wait_seconds=0)
    cluster_limits.acquire(limits, wait_seconds=0)

    # when a third asks, then one of the two ends
    refused, wait, reason = cluster_limits.try_acquire(limits)
    cluster_limits.release(first)

    # then the third was refused (for concurrency, told at most the lease time) and gets the freed slot
    assert refused is None
    assert reason == "concurrency"
    assert 0 < wait <= limits.lease_seconds
    assert cluster_limits.acquire(limits, wait_seconds=0)


def test_a_waiter_is_woken_by_a_release_not_by_polling():
    # given the only slot taken, released 0.3 s later from another thread
    limits = capacity(max_concurrent=1)
    held = cluster_limits.acquire(limits, wait_seconds=0)
    threading.Timer(0.3, cluster_limits.release, args=(held,)).start()

    # when another caller waits for it
    started = time.monotonic()
    cluster_limits.acquire(limits, wait_seconds=5)

    # then it got the slot soon after the release, well before its own wait ran out
    assert 0.25 <= time.monotonic() - started < 1.5


def test_a_lease_nobody_renews_expires_within_the_lease_time():
    # given a slot held by a process that stopped renewing it (as a killed worker does)
    limits = capacity(max_concurrent=1, lease_seconds=1)
    lease = cluster_limits.acquire(limits, wait_seconds=0)
    cluster_limits._renewer().drop(lease)
    dropped = time.monotonic()

    # when another caller waits for capacity
    wait_for(lambda: cluster_limits.try_acquire(limits)[0], timeout=3, what="the lapsed lease to free its slot")

    # then the slot came back within the lease time (and a bit of polling)
    assert time.monotonic() - dropped < 1.5


def test_a_renewed_lease_outlives_its_lease_time():
    # given a slot held by a live process (its renewer keeps it)
    limits = capacity(max_concurrent=1, lease_seconds=1)
    lease = cluster_limits.acquire(limits, wait_seconds=0)

    # when more than the lease time passes
    time.sleep(1.6)  # the property under test is "still held after the lease time"

    # then it is still held
    assert cluster_limits.try_acquire(limits)[0] is None
    cluster_limits.release(lease)


def test_requests_per_window_and_the_time_until_one_frees():
    # given three requests a second, all used
    limits = capacity(max_requests=3, window_seconds=1)
    for _ in range(3):
        cluster_limits.acquire(limits, wait_seconds=0)

    # when a fourth asks
    refused, wait, reason = cluster_limits.try_acquire(limits)

    # then it is told to wait about the rest of the window, and gets in after that
    assert refused is None
    assert reason == "requests"
    assert 0.5 < wait <= 1.5
    started = time.monotonic()
    cluster_limits.acquire(limits, wait_seconds=3)
    assert time.monotonic() - started >= 0.5


def test_tokens_reserved_are_corrected_to_the_reported_usage():
    # given 100 tokens a minute; a call reserved 60 but used 10
    limits = capacity(max_tokens=100)
    lease = cluster_limits.acquire(limits, tokens=60, wait_seconds=0)

    # when it ends, another asking 80 while the first reservation stands is refused...
    assert cluster_limits.try_acquire(limits, tokens=80)[2] == "tokens"
    cluster_limits.release(lease, tokens_used=10)

    # then after the correction the 80 fit (10 + 80 <= 100)
    assert cluster_limits.try_acquire(limits, tokens=80)[0] is not None


def test_past_the_wait_the_caller_is_told_why_and_for_how_long():
    # given no capacity for the next 60 s
    limits = capacity(max_requests=1, window_seconds=60)
    cluster_limits.acquire(limits, wait_seconds=0)

    # when a caller that may wait 0.2 s asks
    started = time.monotonic()
    with pytest.raises(CapacityUnavailable) as refused:
        cluster_limits.acquire(limits, wait_seconds=0.2)

    # then it gives up at once (nothing frees within its wait) and says so
    assert time.monotonic() - started < 0.2
    assert refused.value.reason == "requests"
    assert 58 < refused.value.retry_after <= 62
    assert str(refused.value).startswith("waiting: test capacity (requests)")


def test_a_429_pauses_every_caller_for_the_time_the_provider_asked(settings):
    # given provider limits configured
    settings.LLM_MAX_CONCURRENT_CALLS = 5

    # when one call is answered 429 "retry after 0.6 s"
    with pytest.raises(ProviderRateLimited), provider_capacity(prompt_tokens=10):
        raise ProviderRateLimited("429", retry_after=0.6)

    # then nobody gets capacity until then, and everyone after it
    refused, wait, reason = cluster_limits.try_acquire(provider_limits())
    assert refused is None
    assert reason == "paused"
    assert 0.3 < wait <= 0.6
    started = time.monotonic()
    with provider_capacity(prompt_tokens=10):
        assert time.monotonic() - started >= 0.3


def test_a_429_pauses_the_cluster_even_without_configured_limits(settings):
    # given no limits configured (the default), and a 429 naming its reset in x-ratelimit headers
    with pytest.raises(ProviderRateLimited), provider_capacity(prompt_tokens=10):
        raise ProviderRateLimited("429", headers={"x-ratelimit-reset-requests": "1.5s"})

    # then the whole cluster waits for that reset
    assert cluster_limits.try_acquire(provider_limits())[2] == "paused"


def test_an_answer_saying_nothing_is_left_pauses_until_the_reset(settings):
    # when an answer reports no requests left, resetting in 2 s
    completion = Completion(
        "ok",
        "m",
        1,
        1,
        rate_limit_headers={"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"},
    )
    with provider_capacity(prompt_tokens=1) as call:
        call.used(completion)

    # then the next call waits for the reset
    _refused, wait, reason = cluster_limits.try_acquire(provider_limits())
    assert reason == "paused"
    assert 1.5 < wait <= 2


def test_the_ai_task_rate_is_counted_for_the_cluster(settings):
    # given "2 a minute" for the AI task
    settings.CLUSTER_TASK_RATE_LIMITS = {AI_TASK: (2, 60)}

    # when three runs start (from anywhere in the cluster: the count is in Redis)
    cluster_limits.take_task_rate(AI_TASK, wait_seconds=0)
    cluster_limits.take_task_rate(AI_TASK, wait_seconds=0)

    # then the third waits, told about a minute
    with pytest.raises(CapacityUnavailable) as refused:
        cluster_limits.take_task_rate(AI_TASK, wait_seconds=0)
    assert refused.value.retry_after > 55
    # and a task without a cluster rate is never held
    cluster_limits.take_task_rate("tasks_app.tasks.notification_tasks.send_webhook", wait_seconds=0)


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("LLM_MAX_CONCURRENT_CALLS", "-1", "LLM_MAX_CONCURRENT_CALLS='-1' is out of range: expected 1 to 100,000"),
        ("LLM_MAX_CONCURRENT_CALLS", "five", "LLM_MAX_CONCURRENT_CALLS='five' is not a whole number"),
        ("LLM_REQUESTS_PER_MINUTE", "0", "LLM_REQUESTS_PER_MINUTE='0' is out of range"),
        ("LLM_TOKENS_PER_MINUTE", "99999999999999", "LLM_TOKENS_PER_MINUTE='99999999999999' is out of range"),
        ("LLM_CAPACITY_LEASE_SECONDS", "0", "LLM_CAPACITY_LEASE_SECONDS='0' is out of range"),
        ("AI_TASK_RATE_LIMIT", "ten a minute", "AI_TASK_RATE_LIMIT='ten a minute' is not a rate"),
        ("AI_TASK_RATE_LIMIT", "0/m", "AI_TASK_RATE_LIMIT='0/m' is out of range"),
    ],
)
def test_bad_limits_stop_the_process_at_start_up_saying_what_is_wrong(variable, value, says):
    # when a process loads the settings with a bad limit
    result = run_python(
        "import django; django.setup()", DJANGO_SETTINGS_MODULE="claw_ai.settings.test", **{variable: value}
    )

    # then it does not start, and says which variable and what is accepted
    assert result.returncode != 0
    assert says in result.stderr


def test_empty_limits_mean_no_limit():
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.LLM_MAX_CONCURRENT_CALLS, s.LLM_REQUESTS_PER_MINUTE, s.LLM_TOKENS_PER_MINUTE)"
    )
    result = run_python(
        code,
        DJANGO_SETTINGS_MODULE="claw_ai.settings.test",
        LLM_MAX_CONCURRENT_CALLS="",
        LLM_REQUESTS_PER_MINUTE=None,
        LLM_TOKENS_PER_MINUTE="",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["None", "None", "None"]
