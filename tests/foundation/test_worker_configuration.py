"""The workers of `make run` and compose: AI on threads (one per core, 50 threads sharing a few pooled
connections), the other queues on prefork where the time limits hold."""

import re
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tasks_app.models import TaskRecord, TaskState
from tasks_app.tasks.ai_tasks import generate_ai_response
from tests.support.tasks import ignore_soft_limit, record_run, wait_for_key
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

POOL_SIZE = 3
TASKS = 60


def connections_named(application_name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [application_name])
        return cursor.fetchone()[0]


ROOT = Path(__file__).resolve().parents[2]


def procfile_line(name: str) -> str:
    lines = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith(f"{name}: ")]
    assert len(lines) == 1, f"one {name} line in the Procfile"
    return lines[0]


def option(line: str, name: str) -> str:
    """An option's value as the shell would expand it with the environment unset (${X:-default})."""
    value = line.split(f" {name} ", 1)[1].split(maxsplit=1)[0]
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_make_run_and_compose_start_the_ai_workers_with_threads_and_a_connection_pool():
    for number in (1, 2):  # one worker per core, each with its own node name, on the AI queue
        assert re.search(
            rf"^worker{number}: DJANGO_DB_POOL_MAX_SIZE=\$\{{DJANGO_DB_POOL_MAX_SIZE:-10\}} "
            rf"python -m devtools.respawn celery .* "
            rf"-n worker{number}@%h -Q ai_high_priority -P \$\{{CELERY_WORKER_POOL:-threads\}} "
            rf"-c \$\{{CELERY_WORKER_CONCURRENCY:-50\}}",
            procfile_line(f"worker{number}"),
        )
    for compose in ("docker-compose.yml", "docker-compose.prod.yml"):
        text = (ROOT / compose).read_text()
        assert '"-P", "${CELERY_WORKER_POOL:-threads}", "-c", "${CELERY_WORKER_CONCURRENCY:-50}"' in text
        assert "DJANGO_DB_POOL_MAX_SIZE: ${DJANGO_DB_POOL_MAX_SIZE:-10}" in text
        assert "replicas: 2" in text


def test_make_run_runs_every_other_queue_on_prefork_where_time_limits_hold():
    line = procfile_line("background")
    assert option(line, "-P") == "prefork"
    assert option(line, "-Q").split(",") == [
        settings.QUEUE_KNOWLEDGE,
        settings.QUEUE_NOTIFICATION,
        settings.QUEUE_DEFAULT,
    ]


def test_a_stuck_task_on_the_background_worker_is_ended_by_its_time_limits(start_worker):
    # given a worker started as make run starts the background one (its pool and size)
    background = procfile_line("background")
    queue = f"limits-{uuid.uuid4().hex[:6]}"
    never = f"never:{queue}"
    start_worker(queues=[queue], pool=option(background, "-P"), concurrency=int(option(background, "-c")))

    # when one task hangs, and another hangs and swallows the soft limit; every message carries
    # limits (CELERY_TASK_SOFT_TIME_LIMIT / CELERY_TASK_TIME_LIMIT when the sender names none):
    # here short ones, soft 1 s and hard 3 s
    limits = {"soft_time_limit": 1, "time_limit": 3}
    stuck = wait_for_key.apply_async(args=[never, 300], queue=queue, **limits).id
    stubborn = ignore_soft_limit.apply_async(args=[never, 300], queue=queue, **limits).id

    # then the soft limit ends the first, the hard limit the second: both fail, visibly
    records = TaskRecord.objects.filter(task_id__in=[stuck, stubborn], state=TaskState.FAILURE)
    wait_for(lambda: records.count() == 2, timeout=60, what="both stuck tasks to be ended by their limits")
    errors = {record.task_id: record.error for record in records}
    assert "SoftTimeLimitExceeded" in errors[stuck]
    assert "TimeLimitExceeded" in errors[stubborn]
    # and the worker goes on (the killed process was replaced)
    after = record_run.apply_async(args=["after", f"runs:{queue}"], queue=queue).id
    wait_for(
        lambda: TaskRecord.objects.filter(task_id=after, state=TaskState.SUCCESS).exists(),
        timeout=30,
        what="a task after the kill",
    )


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
