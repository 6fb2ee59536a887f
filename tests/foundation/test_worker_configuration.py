"""The worker of `make run` and compose: threads from the settings, sharing pooled connections."""

import uuid

import pytest
from django.db import connection

from tasks_app.models import TaskRecord, TaskState
from tasks_app.tasks.ai_tasks import generate_ai_response
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

POOL_SIZE = 3
TASKS = 60


def connections_named(application_name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [application_name])
        return cursor.fetchone()[0]


def test_the_default_worker_runs_threads_on_a_few_pooled_connections(start_worker):
    # given a worker started as the Procfile starts it: no -P / -c, a connection pool of 3
    queue = f"pooled-{uuid.uuid4().hex[:6]}"
    probe = f"claw-pool-probe-{uuid.uuid4().hex[:6]}"
    worker = start_worker(
        queues=[queue],
        pool=None,
        concurrency=None,
        env={"DJANGO_DB_POOL_MAX_SIZE": str(POOL_SIZE), "PGAPPNAME": probe, "CELERY_WORKER_CONCURRENCY": "30"},
    )
    stats = worker_stats(worker.name)
    assert stats["pool"]["implementation"].endswith("thread:TaskPool")
    assert stats["pool"]["max-concurrency"] == 30

    # when it runs 60 AI generations at once
    ids = [
        generate_ai_response.apply_async(
            kwargs={"conversation_id": f"conv_pool_{n % 6}", "user_message": f"q{n}", "user_id": "user_pool"},
            queue=queue,
        ).id
        for n in range(TASKS)
    ]
    most = 0

    def all_done() -> bool:
        nonlocal most
        most = max(most, connections_named(probe))
        return TaskRecord.objects.filter(task_id__in=ids, state=TaskState.SUCCESS).count() == TASKS

    wait_for(all_done, timeout=120, interval=0.1, what="60 generations on the threads worker")

    # then all succeed, and its 30 threads never held more connections than the pool allows
    assert 0 < most <= POOL_SIZE


def worker_stats(name: str) -> dict:
    from claw_ai.celery import celery_app

    replies = celery_app.control.inspect(destination=[name], timeout=2).stats() or {}
    return replies[name]
