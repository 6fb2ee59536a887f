"""The AI task's rate limit (AI_TASK_RATE_LIMIT, 10/m by default) holds for the whole cluster.

Celery's own rate_limit counts per worker process, so two workers would run twice the figure;
the AI task's limit is counted in Redis (tasks_app.cluster_limits) by every worker together.
"""

import pytest
from django.conf import settings

from conversations.models import Message, MessageRole
from tasks_app.tasks.ai_tasks import generate_ai_response
from tests.foundation.test_settings import run_python
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

AI_TASK = "tasks_app.tasks.ai_tasks.generate_ai_response"
QUEUE = "test_cluster_rate"


def test_the_default_rate_is_ten_a_minute_for_the_cluster_not_per_worker():
    # the base settings (test settings drop it unless CLAW_TEST_KEEP_RATE_LIMITS is set)
    code = "import django; django.setup(); from django.conf import settings as s; print(s.CLUSTER_TASK_RATE_LIMITS)"
    result = run_python(code, DJANGO_SETTINGS_MODULE="claw_ai.settings.test", CLAW_TEST_KEEP_RATE_LIMITS="1")
    assert result.returncode == 0, result.stderr
    assert f"'{AI_TASK}': (10, 60)" in result.stdout
    # and Celery's per-worker annotation no longer carries it
    assert AI_TASK not in settings.TASK_RATE_LIMITS
    assert "rate_limit" not in result.stdout


def test_two_workers_together_start_no_more_than_the_rate(start_worker, redis_client):
    # given two workers that keep the AI task's rate, set to 4 a second
    for key in redis_client.scan_iter("claw:capacity:*"):
        redis_client.delete(key)
    env = {"CLAW_TEST_KEEP_RATE_LIMITS": "1", "AI_TASK_RATE_LIMIT": "4/s", "LLM_CAPACITY_WAIT_SECONDS": "1"}
    workers = [start_worker(queues=[QUEUE], pool="threads", concurrency=6, env=env) for _ in range(2)]
    assert len(workers) == 2

    # when 16 replies are sent at once
    for n in range(16):
        generate_ai_response.apply_async(
            kwargs={"conversation_id": f"conv_rate_{n}", "user_message": "hi", "user_id": "u1"}, queue=QUEUE
        )

    # then they all run, but no second of the run saw more than 4 start across both workers
    started = wait_for(
        lambda: (
            (
                times := sorted(
                    Message.objects.filter(
                        role=MessageRole.USER, conversation__public_id__startswith="conv_rate_"
                    ).values_list("created_at", flat=True)
                )
            )
            and len(times) == 16
            and times
        ),
        timeout=30,
        what="16 replies to start",
    )
    busiest = max(sum(1 for other in started if 0 <= (other - first).total_seconds() < 1.0) for first in started)
    assert busiest <= 4
    assert (started[-1] - started[0]).total_seconds() >= 2.5  # 16 at 4/s: at least three windows
