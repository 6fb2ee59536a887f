"""The AI task's rate limit (10/m by default) reaches the workers from settings."""

import pytest
from django.conf import settings

from claw_ai.celery import celery_app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

AI_TASK = "tasks_app.tasks.ai_tasks.generate_ai_response"


def test_the_configured_rate_limit_is_applied_by_workers(start_worker):
    # given the configured limit (test workers drop it unless asked to keep it)
    assert settings.TASK_RATE_LIMITS[AI_TASK] == "10/m"

    # when a worker starts with the normal (non-test) annotations
    worker = start_worker(queues=["test_rate_limit_unused"], concurrency=1, env={"CLAW_TEST_KEEP_RATE_LIMITS": "1"})

    # then the worker's AI task carries the 10/m rate limit
    registered = celery_app.control.inspect(destination=[worker.name], timeout=5).registered("rate_limit")
    assert f"{AI_TASK} [rate_limit=10/m]" in registered[worker.name]
