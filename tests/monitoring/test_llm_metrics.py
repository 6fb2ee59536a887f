"""Token, cost, provider-call and 429 metrics on a real worker against a loopback fake provider."""

from decimal import Decimal

import pytest

from conversations.models import Message, MessageRole
from tasks_app.models import TaskRecord, TaskState
from tasks_app.tasks.ai_tasks import generate_ai_response
from tests.monitoring.conftest import delta, sample, scrape
from tests.support.fake_llm import FakeLLM, answer, error
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

QUEUE = "test_metrics_llm"
MODEL = "gpt-4o-mini"


@pytest.fixture
def fake_llm():
    server = FakeLLM()
    yield server
    server.stop()


def test_token_and_cost_counters_match_the_ledger(fake_llm, start_worker, metrics_token):
    # given: a worker on the fake provider, which answers 429 once, then three replies
    start_worker(
        queues=[QUEUE],
        concurrency=1,
        env={"LLM_PROVIDER": "openai", "LLM_BASE_URL": fake_llm.base_url, "LLM_API_KEY": "x", "LLM_MODEL": MODEL},
    )
    fake_llm.script(
        error(429, "slow down", retry_after=0),
        answer("one", prompt_tokens=12, completion_tokens=3),
        answer("two", prompt_tokens=700, completion_tokens=40),
        answer("three", prompt_tokens=5, completion_tokens=2000),
    )
    before = scrape(metrics_token)
    # when
    task_ids = []
    for number in range(3):
        task_id = generate_ai_response.apply_async(
            kwargs={"conversation_id": f"conv_metrics_{number}", "user_message": "hi", "user_id": "u1"}, queue=QUEUE
        ).id
        task_ids.append(task_id)
        wait_for(
            lambda task_id=task_id: TaskRecord.objects.filter(task_id=task_id, state=TaskState.SUCCESS).exists(),
            timeout=60,
            what="the reply",
        )
    replies = Message.objects.filter(task_id__in=task_ids, role=MessageRole.ASSISTANT)
    ledger = {
        "input": sum(r.prompt_tokens for r in replies),
        "output": sum(r.completion_tokens for r in replies),
        "cost": sum((r.cost for r in replies), Decimal(0)),
    }
    assert ledger["input"] == 717
    assert ledger["output"] == 2043
    assert ledger["cost"] > 0

    # then (provider-call figures are written by the worker about a second later)
    answered = sample("gen_ai_client_operation_duration_seconds_count", model=MODEL, error_type="")
    wait_for(lambda: delta(before, scrape(metrics_token)).get(answered) == 3, timeout=20, what="3 calls counted")
    moved = delta(before, scrape(metrics_token))
    for token_type in ("input", "output"):
        assert moved[sample("gen_ai_client_token_usage_sum", model=MODEL, token_type=token_type)] == ledger[token_type]
        assert moved[sample("gen_ai_client_token_usage_count", model=MODEL, token_type=token_type)] == 3
    # 5, 12 and 700 input tokens: two in the bucket up to 16
    assert moved[sample("gen_ai_client_token_usage_bucket", model=MODEL, token_type="input", le="16.0")] == 2
    assert Decimal(str(moved[sample("claw_llm_cost_usd_total", model=MODEL)])) == ledger["cost"]
    assert moved[sample("claw_llm_rate_limited_total", model=MODEL)] == 1
    limited = sample("gen_ai_client_operation_duration_seconds_count", model=MODEL, error_type="ProviderRateLimited")
    assert moved[limited] == 1
    assert moved[sample("gen_ai_server_time_to_first_token_seconds_count", model=MODEL)] == 3
    labels = {label for key in moved for label, _ in key[1]}
    assert not labels & {"task_id", "user_id", "conversation_id"}
