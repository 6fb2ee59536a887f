"""A worker node that dies holding tasks: the lifeline hands them to a live worker."""

import time
import uuid

import pytest

from tasks_app.lifeline import rescue_orphaned_tasks
from tasks_app.models import TaskRecord, TaskState
from tests.support.tasks import wait_for_key
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def test_tasks_of_a_killed_worker_node_are_rescued_and_finish(start_worker, consume_queue, redis_client, capsys):
    # given a worker running two tasks and two more queued behind them
    queue = f"lifeline-{uuid.uuid4().hex[:6]}"
    release_key = f"release:{queue}"
    # (a heartbeat that outlives the test: the lifeline job, not the live workers' heartbeat check
    # of tasks_app.liveness, hands the dead node's tasks back here; test_node_crash shows the other)
    doomed = start_worker(queues=[queue], concurrency=2, env={"WORKER_HEARTBEAT_TTL_SECONDS": "600"})
    sent = [wait_for_key.apply_async(args=[release_key, 120], queue=queue) for _ in range(4)]
    ids = [result.id for result in sent]
    wait_for(
        lambda: TaskRecord.objects.filter(task_id__in=ids, state=TaskState.STARTED).count() == 2,
        timeout=30,
        what="two tasks to start",
    )
    running_on_dead_node = set(
        TaskRecord.objects.filter(task_id__in=ids, state=TaskState.STARTED).values_list("task_id", flat=True)
    )

    # when the whole node dies, a new worker comes up, and the lifeline runs
    doomed.kill()
    crashed_at = time.monotonic()
    consume_queue(queue)
    report = rescue_orphaned_tasks(grace_seconds=0)
    redis_client.set(release_key, 1)

    # then the tasks the dead node held are back in the queue: the two it ran, and any it had
    # reserved besides (a busy machine lets it fetch one more before the kill); every task succeeds
    assert running_on_dead_node <= set(report.rescued_task_ids) <= set(ids)
    wait_for(
        lambda: TaskRecord.objects.filter(task_id__in=ids, state=TaskState.SUCCESS).count() == 4,
        timeout=60,
        what="all four tasks to succeed",
    )
    with capsys.disabled():
        print(f"\nlifeline: recovered from the node crash in {time.monotonic() - crashed_at:.1f}s")
    assert TaskRecord.objects.filter(task_id__in=report.rescued_task_ids, resent_count=1).count() == len(
        report.rescued_task_ids
    )


def test_tasks_held_by_a_live_worker_are_left_alone(consume_queue, redis_client):
    # given a live worker running a task
    queue = f"lifeline-{uuid.uuid4().hex[:6]}"
    release_key = f"release:{queue}"
    consume_queue(queue)
    sent = wait_for_key.apply_async(args=[release_key, 60], queue=queue)
    wait_for(lambda: TaskRecord.objects.filter(task_id=sent.id, state=TaskState.STARTED).exists(), timeout=30)

    # when the lifeline runs
    report = rescue_orphaned_tasks(grace_seconds=0)

    # then it does not re-queue the running task, which finishes once
    assert sent.id not in report.rescued_task_ids
    redis_client.set(release_key, 1)
    wait_for(lambda: TaskRecord.objects.filter(task_id=sent.id, state=TaskState.SUCCESS).exists(), timeout=30)
    assert TaskRecord.objects.get(task_id=sent.id).resent_count == 0
