"""submit_task / cancel_task / retry_task against a real broker and worker."""

import pytest
from django.db.models import Count, Sum
from django_celery_results.models import TaskResult

from claw_ai.celery import celery_app
from tasks_app.models import TaskCount, TaskRecord, TaskState
from tasks_app.selectors import retried_task_ids
from tasks_app.services import TaskStateConflict, cancel_task, retry_task, submit_task
from tests.factories import TaskRecordFactory, UserFactory
from tests.support import tasks as _registered  # noqa: F401 (tests.fail is known here, as in the workers)
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture
def user():
    return UserFactory(username="alice")


def wait_state(task_id: str, state: str) -> TaskRecord:
    return wait_for(
        lambda: TaskRecord.objects.filter(task_id=task_id, state=state).first(),
        timeout=30,
        what=f"{task_id} to reach {state}",
    )


def test_submit_records_owner_queue_and_priority(celery_worker, user):
    # when a task is submitted for a user
    record = submit_task(task_name="tests.record_run", args=["a", "services:submit"], priority=7, submitted_by=user)

    # then its record is there at once, owned by the user, and the worker runs it
    assert record.submitted_by == user
    assert record.queue == "default"
    assert record.priority == 7
    assert record.args == ["a", "services:submit"]
    wait_state(record.task_id, TaskState.SUCCESS)


def test_cancel_a_finished_task_conflicts(celery_worker, user):
    # given a finished task
    record = submit_task(task_name="tests.record_run", args=["a", "services:finished"], submitted_by=user)
    done = wait_state(record.task_id, TaskState.SUCCESS)

    # when it is cancelled, then the state forbids it
    with pytest.raises(TaskStateConflict):
        cancel_task(record=done, by=user)


def test_cancel_a_delayed_task_reads_revoked_at_once(celery_worker, user):
    # given a task delayed by a minute
    record = submit_task(task_name="tests.record_run", args=["a", "services:delayed"], countdown=60, submitted_by=user)

    # when it is cancelled
    cancelled = cancel_task(record=record, by=user)

    # then the record and TaskResult read REVOKED, and so does Celery
    assert cancelled.state == TaskState.REVOKED
    assert TaskResult.objects.get(task_id=record.task_id).status == TaskState.REVOKED
    assert celery_app.AsyncResult(record.task_id).status == "REVOKED"


def test_retry_of_a_failure_keeps_args_and_links_back(celery_worker, user):
    # given a failed task
    record = submit_task(
        task_name="tests.fail", args=["boom"], queue="knowledge_default", priority=3, submitted_by=user
    )
    failed = wait_state(record.task_id, TaskState.FAILURE)
    assert "ValueError: boom" in failed.error

    # when it is retried
    again, is_new = retry_task(record=failed, by=user)

    # then a new task with the same call runs, pointing back at the failure
    assert is_new
    assert again.task_id != failed.task_id
    assert again.retry_of == failed
    assert (again.task_name, again.args) == ("tests.fail", ["boom"])
    assert (again.queue, again.priority) == ("knowledge_default", 3)
    wait_state(again.task_id, TaskState.FAILURE)


def test_retry_of_a_pending_task_conflicts(user):
    record = TaskRecordFactory(task_id="pending-1", task_name="tests.fail", queue="default", submitted_by=user)
    with pytest.raises(TaskStateConflict):
        retry_task(record=record, by=user)


def test_task_counts_follow_inserts_state_changes_and_deletes(user):
    # given records created, moved between states, re-owned and deleted in every way the ORM allows
    other = UserFactory(username="bob")
    for n in range(6):
        TaskRecordFactory(task_id=f"count-{n}", task_name="x", queue="default", submitted_by=user)
    TaskRecord.objects.filter(task_id__in=["count-0", "count-1"]).update(state=TaskState.SUCCESS)
    record = TaskRecord.objects.get(task_id="count-2")
    record.state = TaskState.FAILURE
    record.save()
    TaskRecord.objects.filter(task_id="count-3").delete()
    TaskRecord.objects.filter(task_id="count-4").update(submitted_by=other, queue="knowledge_default")
    TaskRecordFactory(task_id="count-code", task_name="x", queue="default")

    # then the trigger-kept counts equal a real GROUP BY, for everyone and per owner
    def kept(owner):
        rows = TaskCount.objects.filter(owner=owner).values("queue", "state").annotate(n=Sum("count"))
        return {(row["queue"], row["state"]): row["n"] for row in rows if row["n"]}

    def counted(records):
        rows = records.order_by().values("queue", "state").annotate(n=Count("*"))
        return {(row["queue"], row["state"]): row["n"] for row in rows}

    assert kept(TaskCount.ALL_OWNERS) == counted(TaskRecord.objects.all())
    assert kept(user.pk) == counted(TaskRecord.objects.filter(submitted_by=user))
    assert kept(other.pk) == {("knowledge_default", "PENDING"): 1}
    assert kept(TaskCount.ALL_OWNERS)[("default", "PENDING")] == 2


def test_retried_task_ids_follow_the_retry_chain_nearest_first():
    # given a task, its retry, and the retry's retry
    first = TaskRecordFactory(task_id="chain-1", task_name="t", state=TaskState.FAILURE)
    second = TaskRecordFactory(task_id="chain-2", task_name="t", state=TaskState.FAILURE, retry_of=first)
    third = TaskRecordFactory(task_id="chain-3", task_name="t", retry_of=second)

    # then each record's chain runs back to the first task
    assert retried_task_ids(record_id=third.pk) == ["chain-3", "chain-2", "chain-1"]
    assert retried_task_ids(record_id=first.pk) == ["chain-1"]
    assert retried_task_ids(record_id=third.pk, depth=2) == ["chain-3", "chain-2"]
    assert retried_task_ids(record_id=None) == []
