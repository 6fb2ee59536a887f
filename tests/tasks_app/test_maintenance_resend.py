"""Tasks whose message the broker lost are re-sent from their records, once per loss."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from tasks_app.maintenance import resend_lost_tasks
from tasks_app.models import TaskRecord, TaskState
from tasks_app.tasks.maintenance_tasks import resend_lost_tasks as resend_lost_tasks_job
from tests.factories import TaskRecordFactory, UserFactory
from tests.support.tasks import record_run
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

LOST_AFTER = timedelta(minutes=10)


def backdate(record: TaskRecord, age: timedelta = 2 * LOST_AFTER) -> None:
    TaskRecord.objects.filter(pk=record.pk).update(created_at=timezone.now() - age)


def lost_record(queue: str, list_key: str, **fields) -> TaskRecord:
    """A PENDING record whose message never reached (or vanished from) the broker."""
    record = TaskRecordFactory(
        task_id=str(uuid.uuid4()),
        task_name=record_run.name,
        args=["ran", list_key],
        queue=queue,
        priority=7,
        **fields,
    )
    backdate(record)
    return record


def test_a_lost_task_is_resent_with_its_id_and_runs_once(consume_queue, redis_client):
    # given a worker on one queue, and a task of that queue pending for 20 minutes with no message anywhere
    queue = f"lost-{uuid.uuid4().hex[:6]}"
    consume_queue(queue)
    owner = UserFactory(username="owner")
    list_key = f"runs:{queue}"
    record = lost_record(queue, list_key, submitted_by=owner)

    # when the job runs
    report = resend_lost_tasks(pending_for=LOST_AFTER)

    # then the task is re-sent from its record under the same id, the worker runs it once,
    # and the record notes the re-send and keeps its owner, queue and priority
    assert report.resent_task_ids == [record.task_id]
    wait_for(lambda: TaskRecord.objects.get(pk=record.pk).state == TaskState.SUCCESS, what="the re-sent task to run")
    record.refresh_from_db()
    assert (record.resent_count, record.queue, record.priority, record.submitted_by) == (1, queue, 7, owner)
    assert record.resent_at is not None
    assert redis_client.lrange(list_key, 0, -1) == [b"ran"]


def test_a_lost_task_is_not_resent_twice(redis_client, settings):
    # given a lost task on a queue no worker consumes (so no worker's answer matters: each run
    # needs the workers' inspection only to end, not its whole production-sized wait)
    settings.LIFELINE_INSPECT_TIMEOUT = 0.2
    queue = f"nobody-{uuid.uuid4().hex[:6]}"
    record = lost_record(queue, f"runs:{queue}")

    # when the job runs twice (as beat runs it every few minutes)
    first = resend_lost_tasks(pending_for=LOST_AFTER)
    second = resend_lost_tasks(pending_for=LOST_AFTER)

    # then it was re-sent once, and its message now waits in the broker queue
    assert first.resent_task_ids == [record.task_id]
    assert second.resent_task_ids == []
    record.refresh_from_db()
    assert record.resent_count == 1
    assert any(
        record.task_id.encode() in raw
        for raw in redis_client.lrange(queue, 0, -1) + _priority_lists(redis_client, queue)
    )

    # and even past the threshold again, a message still in the broker is not a loss
    TaskRecord.objects.filter(pk=record.pk).update(resent_at=timezone.now() - 2 * LOST_AFTER)
    third = resend_lost_tasks(pending_for=LOST_AFTER)
    assert third.resent_task_ids == []
    assert third.left_alone[record.task_id] == "in the broker"
    redis_client.delete(queue, *[f"{queue}:{step}" for step in range(10)])


def _priority_lists(redis_client, queue):
    return [raw for step in range(1, 10) for raw in redis_client.lrange(f"{queue}:{step}", 0, -1)]


def test_a_task_a_worker_holds_for_later_is_not_resent(start_worker, redis_client):
    # given a worker holding a task with a countdown (not in the queue any more, not started);
    # a worker of its own, which hands the held message back when it stops (a shared one would
    # hold it, unacknowledged, for the rest of the session)
    queue = f"held-{uuid.uuid4().hex[:6]}"
    start_worker(queues=[queue], concurrency=1)
    sent = record_run.apply_async(args=["later", f"runs:{queue}"], queue=queue, countdown=300)
    record = TaskRecord.objects.get(task_id=sent.id)
    wait_for(
        lambda: redis_client.llen(queue) == 0 and not _priority_lists(redis_client, queue), what="worker to take it"
    )
    TaskRecord.objects.filter(pk=record.pk).update(eta=None)
    backdate(record)

    # when the job runs
    report = resend_lost_tasks(pending_for=LOST_AFTER)

    # then it is left alone: a live worker holds it
    assert report.resent_task_ids == []
    assert report.left_alone[record.task_id] == "held by a live worker"
    record.refresh_from_db()
    assert record.resent_count == 0


def test_recent_and_started_tasks_are_never_candidates():
    # given a lost-looking task that is only a minute old, and an old STARTED one
    queue = f"nobody-{uuid.uuid4().hex[:6]}"
    young = lost_record(queue, "runs:young")
    backdate(young, timedelta(minutes=1))
    lost_record(queue, "runs:started", state=TaskState.STARTED)

    # when the job runs (as beat sends it)
    report = resend_lost_tasks_job(pending_for_seconds=LOST_AFTER.total_seconds())

    # then nothing is re-sent
    assert report["resent_task_ids"] == []
