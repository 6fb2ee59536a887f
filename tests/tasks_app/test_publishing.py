"""The one publish path (tasks_app.publishing) against the real database and Redis.

Messages go to a queue no worker consumes, so each test can look at what the broker holds.
"""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from claw_ai.celery import celery_app
from tasks_app import publishing, records
from tasks_app.maintenance import BrokerView
from tasks_app.models import TaskRecord, TaskState
from tests.support.broker import broker_unreachable, queue_watch
from tests.support.tasks import record_run
from tests.support.workers import session_worker_not_consuming

pytestmark = pytest.mark.django_db(transaction=True)

QUEUE = "publishing-tests"  # no worker consumes it


@pytest.fixture
def broker():
    """Whether the broker holds a task's message in QUEUE; the queue is emptied afterwards."""
    with queue_watch(QUEUE) as holds:
        yield holds


@pytest.fixture
def broker_down():
    with broker_unreachable():
        yield


def test_publish_writes_the_record_in_one_statement_then_sends(broker, alice, django_assert_num_queries):
    # when a task is published
    with django_assert_num_queries(1):  # the record's INSERT, nothing more
        record = publishing.publish(
            task_name="tests.record_run", args=["a", "k"], queue=QUEUE, submitted_by_id=alice.pk, countdown=60
        )

    # then its record is the stored row, and its message is in the broker
    stored = TaskRecord.objects.get(task_id=record.task_id)
    assert (stored.pk, stored.state, stored.queue, stored.submitted_by) == (record.pk, TaskState.PENDING, QUEUE, alice)
    assert stored.priority == celery_app.conf.task_default_priority  # the registered task's, as send_task gives it
    assert stored.eta == record.eta
    assert record.eta > timezone.now() + timedelta(seconds=50)
    assert broker(record.task_id)


@pytest.fixture
def routed_queue_unconsumed():
    """The session's worker (if this process started it) would take the routed message first."""
    with session_worker_not_consuming("knowledge_default"):
        yield


def test_publish_takes_the_queue_from_the_routes(broker, routed_queue_unconsumed):
    record = publishing.publish(task_name="tasks_app.tasks.knowledge_tasks.index_document", kwargs={"document_id": 0})
    celery_app.control.revoke(record.task_id)  # never to run
    assert TaskRecord.objects.get(pk=record.pk).queue == "knowledge_default"
    with celery_app.connection_for_write() as connection:
        assert BrokerView(connection.default_channel).holds(record.task_id, "knowledge_default")
        connection.default_channel.queue_purge("knowledge_default")


def test_inside_a_transaction_the_message_waits_for_the_commit(broker):
    # when a task is published inside a transaction
    with transaction.atomic():
        record = publishing.publish(task_name="tests.record_run", args=["a", "k"], queue=QUEUE)
        # then its record is written in it, and nothing has left yet
        assert TaskRecord.objects.filter(pk=record.pk).exists()
        assert not broker(record.task_id)

    # and the message leaves at the commit
    assert broker(record.task_id)


def test_a_rolled_back_publish_leaves_neither_record_nor_message(broker):
    class Abandoned(Exception):
        pass

    # The raise inside the block is what rolls the publish back.
    with pytest.raises(Abandoned), transaction.atomic():  # noqa: PT012
        record = publishing.publish(task_name="tests.record_run", args=["a", "k"], queue=QUEUE)
        raise Abandoned
    assert not TaskRecord.objects.filter(task_id=record.task_id).exists()
    assert not broker(record.task_id)


def test_a_broker_error_leaves_no_record(broker_down):
    with pytest.raises(publishing.BrokerUnavailable):
        publishing.publish(task_name="tests.record_run", args=["a", "k"], queue=QUEUE, task_id="never-sent")
    assert not TaskRecord.objects.filter(task_id="never-sent").exists()


def test_apply_async_from_code_is_recorded_once(broker, django_assert_num_queries):
    # when a task is sent from code
    with django_assert_num_queries(1):  # the publish path's INSERT; the signal leaves the message alone
        result = record_run.apply_async(args=["a", "k"], queue=QUEUE, priority=8)

    # then its record says what the message says
    record = TaskRecord.objects.get(task_id=result.id)
    assert (record.task_name, record.args, record.queue, record.priority) == ("tests.record_run", ["a", "k"], QUEUE, 8)
    assert broker(result.id)


def test_apply_async_inside_a_transaction_waits_for_the_commit(broker):
    with transaction.atomic():
        result = record_run.apply_async(args=["a", "k"], queue=QUEUE)
        assert TaskRecord.objects.filter(task_id=result.id).exists()
        assert not broker(result.id)
    assert broker(result.id)


def test_apply_async_that_cannot_leave_leaves_no_record(broker_down):
    with pytest.raises(publishing.BROKER_ERRORS):  # Celery's own error, as apply_async raises it
        record_run.apply_async(args=["a", "k"], queue=QUEUE, task_id="never-sent", retry=False)
    assert not TaskRecord.objects.filter(task_id="never-sent").exists()


def test_apply_async_with_arguments_the_task_does_not_take_leaves_no_record():
    with pytest.raises(TypeError):
        record_run.apply_async(args=["a"], queue=QUEUE, task_id="bad-arguments")
    assert not TaskRecord.objects.filter(task_id="bad-arguments").exists()


def test_a_celery_retry_notes_the_attempt_on_the_same_record(broker):
    first = record_run.apply_async(args=["a", "k"], queue=QUEUE)
    record_run.apply_async(args=["a", "k"], queue=QUEUE, task_id=first.id, retries=2)
    record = TaskRecord.objects.get(task_id=first.id)
    assert (record.retries, TaskRecord.objects.filter(task_id=first.id).count()) == (2, 1)


def test_a_send_around_the_path_is_recorded_by_the_signal(broker, alice):
    # when a task is sent without the publish path (a shell, beat's admin "run now")
    celery_app.send_task(
        "tests.record_run",
        args=["a", "k"],
        queue=QUEUE,
        task_id="raw-send",
        headers={publishing.HEADER_SUBMITTED_BY: alice.pk, "periodic_task_name": "nightly"},
    )

    # then it has a record all the same
    record = TaskRecord.objects.get(task_id="raw-send")
    assert (record.queue, record.submitted_by, record.periodic_task_name) == (QUEUE, alice, "nightly")
    assert broker("raw-send")


def test_resend_publishes_the_record_again_as_it_was(broker, alice):
    # given a recorded task whose message was lost
    record = records.insert_published(
        task_id="lost", task_name="tests.record_run", args=["a", "k"], kwargs={}, queue=QUEUE, priority=3
    )
    TaskRecord.objects.filter(pk=record.pk).update(submitted_by=alice)
    record.refresh_from_db()

    # when it is re-sent
    publishing.resend(record)

    # then the message is back and the record unchanged
    assert broker("lost")
    assert TaskRecord.objects.get(pk=record.pk).created_at == record.created_at
