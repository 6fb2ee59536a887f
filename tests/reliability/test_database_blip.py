"""PostgreSQL drops a running worker's connections: the worker recovers and its tasks finish."""

import uuid

import pytest
from django.db import connection

from tasks_app.models import TaskRecord, TaskState
from tests.support.tasks import query_database_until
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def terminate_other_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_tasks_finish_after_their_worker_connections_are_terminated(start_worker, redis_client):
    # given a worker running tasks that query the database
    queue = f"blip-{uuid.uuid4().hex[:6]}"
    release_key = f"release:{queue}"
    worker = start_worker(queues=[queue], concurrency=2)
    sent = [query_database_until.apply_async(args=[release_key], queue=queue) for _ in range(3)]
    ids = [result.id for result in sent]
    wait_for(
        lambda: TaskRecord.objects.filter(task_id__in=ids, state=TaskState.STARTED).count() == 2,
        timeout=30,
        what="two tasks running",
    )

    # when PostgreSQL terminates every connection of the worker mid-run
    assert terminate_other_connections() >= 2

    # then the interrupted tasks retry (released only once one did: released at once, a task
    # could see the key before its next query and finish without noticing, as on a loaded machine)
    wait_for(
        lambda: any(record.retries >= 1 for record in TaskRecord.objects.filter(task_id__in=ids)),
        timeout=30,
        what="an interrupted task to retry",
    )
    # and the worker stays up and every task finishes
    redis_client.set(release_key, 1)
    wait_for(
        lambda: TaskRecord.objects.filter(task_id__in=ids, state=TaskState.SUCCESS).count() == 3,
        timeout=90,
        what="all three tasks to succeed",
    )
    assert worker.process.poll() is None
    assert any(record.retries >= 1 for record in TaskRecord.objects.filter(task_id__in=ids))
