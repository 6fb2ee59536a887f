"""The counting triggers append increments (migration 0005); a fold moves them into the counters.
A scrape sees each increment exactly once, before and after the fold."""

from decimal import Decimal

import pytest
from django.utils import timezone

from conversations.models import Conversation, Message, MessageRole
from monitoring.counters import fold_increments, running_per_worker
from monitoring.models import MetricIncrement
from tasks_app.models import TaskRecord, TaskState
from tests.monitoring.conftest import delta, sample, scrape

pytestmark = pytest.mark.django_db

LABELS = {"name": "t", "queue": "default"}


def test_a_scrape_counts_each_event_once_before_and_after_the_fold(metrics_token):
    # given: a task published, started and finished, and a reply, as the system writes them
    before = scrape(metrics_token)
    record = TaskRecord.objects.create(task_id="inc-1", task_name="t", queue="default")
    now = timezone.now()
    TaskRecord.objects.filter(pk=record.pk).update(state=TaskState.STARTED, worker="w@host", started_at=now)
    TaskRecord.objects.filter(pk=record.pk).update(state=TaskState.SUCCESS, done_at=now)
    conversation = Conversation.objects.create(public_id="conv_inc", user_id="u1")
    Message.objects.create(
        conversation=conversation, role=MessageRole.ASSISTANT, content="a", model="m", prompt_tokens=3, cost=Decimal(1)
    )
    expected = {
        sample("celery_task_sent_total", **LABELS): 1,
        sample("celery_task_started_total", **LABELS): 1,
        sample("celery_task_succeeded_total", **LABELS): 1,
        sample("celery_task_runtime_count", **LABELS): 1,
        sample("claw_task_queue_wait_seconds_count", queue="default"): 1,
        sample("gen_ai_client_token_usage_sum", model="m", token_type="input"): 3,
        sample("claw_llm_cost_usd_total", model="m"): 1,
    }
    assert MetricIncrement.objects.exists()
    unfolded = delta(before, scrape(metrics_token))
    assert {key: unfolded.get(key) for key in expected} == expected

    # when
    fold_increments()

    # then: the increments are in the counters, once
    assert not MetricIncrement.objects.exists()
    assert delta(before, scrape(metrics_token)) == unfolded
    assert fold_increments() == 0
    assert delta(before, scrape(metrics_token)) == unfolded
    assert running_per_worker().get("w@host", 0) == 0


def test_the_running_count_reads_folded_and_unfolded_increments_alike():
    # given: two tasks started on one worker, one of them folded
    first = TaskRecord.objects.create(task_id="inc-run-1", task_name="t", queue="default")
    TaskRecord.objects.filter(pk=first.pk).update(state=TaskState.STARTED, worker="w1@host")
    fold_increments()
    second = TaskRecord.objects.create(task_id="inc-run-2", task_name="t", queue="default")
    TaskRecord.objects.filter(pk=second.pk).update(state=TaskState.STARTED, worker="w1@host")
    # then
    assert running_per_worker()["w1@host"] == 2.0
    # and after the first ends and everything is folded
    TaskRecord.objects.filter(pk=first.pk).update(state=TaskState.SUCCESS)
    fold_increments()
    assert running_per_worker()["w1@host"] == 1.0
