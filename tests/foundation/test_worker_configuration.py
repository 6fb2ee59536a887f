"""The workers of `make run` and compose: one per core, 50 threads each sharing a few pooled connections."""

import re
import uuid
from pathlib import Path

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


ROOT = Path(__file__).resolve().parents[2]


def test_make_run_and_compose_start_the_worker_with_threads_and_a_connection_pool():
    procfile = (ROOT / "Procfile").read_text()
    for number in (1, 2):  # one worker per core, each with its own node name
        assert re.search(
            rf"^worker{number}: DJANGO_DB_POOL_MAX_SIZE=\$\{{DJANGO_DB_POOL_MAX_SIZE:-10\}} celery .* "
            rf"-n worker{number}@%h .*-P \$\{{CELERY_WORKER_POOL:-threads\}} -c \$\{{CELERY_WORKER_CONCURRENCY:-50\}}",
            procfile,
            re.MULTILINE,
        )
    for compose in ("docker-compose.yml", "docker-compose.prod.yml"):
        text = (ROOT / compose).read_text()
        assert '"-P", "${CELERY_WORKER_POOL:-threads}", "-c", "${CELERY_WORKER_CONCURRENCY:-50}"' in text
        assert "DJANGO_DB_POOL_MAX_SIZE: ${DJANGO_DB_POOL_MAX_SIZE:-10}" in text
        assert "replicas: 2" in text


def test_a_threads_worker_runs_on_a_few_pooled_connections(start_worker):
    # given a worker configured as make run's (threads, a connection pool; here 30 threads, 3 connections)
    queue = f"pooled-{uuid.uuid4().hex[:6]}"
    probe = f"claw-pool-probe-{uuid.uuid4().hex[:6]}"
    worker = start_worker(
        queues=[queue],
        pool="threads",
        concurrency=30,
        env={"DJANGO_DB_POOL_MAX_SIZE": str(POOL_SIZE), "PGAPPNAME": probe},
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
