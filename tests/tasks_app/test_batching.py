"""Bulk publishing (tasks_app.batching): a group's records in one statement, then its messages.

Against the real database and Redis; messages go to a queue no worker consumes.
"""

import pytest
from celery import chord, group
from django.db import transaction

from tasks_app import batching, publishing, records
from tasks_app.models import TaskCount, TaskRecord, TaskState
from tests.support.broker import broker_unreachable, queue_watch
from tests.support.tasks import record_run

pytestmark = pytest.mark.django_db(transaction=True)

QUEUE = "batching-tests"  # no worker consumes it


@pytest.fixture
def broker():
    """Whether the broker holds a task's message in QUEUE; the queue is emptied afterwards."""
    with queue_watch(QUEUE) as holds:
        yield holds


@pytest.fixture
def broker_down():
    with broker_unreachable():
        yield


def test_a_group_writes_its_records_in_one_statement_then_sends_them(broker, django_assert_num_queries):
    # when a group of tasks is sent
    with django_assert_num_queries(3):  # BEGIN, one INSERT of the five records, COMMIT
        result = group(record_run.s(f"t{n}", "k").set(queue=QUEUE, priority=7) for n in range(5)).apply_async()

    # then every task has its record, as a single apply_async writes it, and its message
    ids = [each.id for each in result.results]
    stored = {record.task_id: record for record in TaskRecord.objects.filter(task_id__in=ids)}
    assert set(stored) == set(ids)
    for n, task_id in enumerate(ids):
        record = stored[task_id]
        assert (record.task_name, record.args, record.queue, record.priority, record.state) == (
            "tests.record_run",
            [f"t{n}", "k"],
            QUEUE,
            7,
            TaskState.PENDING,
        )
        assert broker(task_id)


def test_the_counts_see_a_bulk_insert_like_single_ones(broker):
    def pending() -> int:
        counts = TaskCount.objects.filter(owner=TaskCount.ALL_OWNERS, queue=QUEUE, state="PENDING")
        return sum(counts.values_list("count", flat=True))

    group(record_run.s(f"t{n}", "k").set(queue=QUEUE) for n in range(4)).apply_async()
    record_run.apply_async(args=["single", "k"], queue=QUEUE)
    assert pending() == 5


def test_a_chord_header_is_published_in_bulk(broker):
    header = [record_run.s(f"t{n}", "k").set(queue=QUEUE) for n in range(3)]
    body = record_run.si("body", "k").set(queue=QUEUE)

    result = chord(header)(body)

    header_ids = [each.id for each in result.parent.results]
    assert TaskRecord.objects.filter(task_id__in=header_ids).count() == 3
    assert all(broker(task_id) for task_id in header_ids)


def test_a_group_that_cannot_leave_leaves_no_record(broker_down):
    signatures = [record_run.s(f"t{n}", "k").set(queue=QUEUE, task_id=f"never-sent-{n}") for n in range(3)]
    with pytest.raises(publishing.BROKER_ERRORS):  # Celery's own error, as apply_async raises it
        group(signatures).apply_async(retry=False)
    assert not TaskRecord.objects.filter(task_id__startswith="never-sent-").exists()


def test_inside_a_transaction_a_group_waits_for_the_commit(broker):
    with transaction.atomic():
        result = group(record_run.s(f"t{n}", "k").set(queue=QUEUE) for n in range(3)).apply_async()
        ids = [each.id for each in result.results]
        assert TaskRecord.objects.filter(task_id__in=ids).count() == 3
        assert not any(broker(task_id) for task_id in ids)
    assert all(broker(task_id) for task_id in ids)


def test_an_error_inside_a_batch_sends_nothing(broker):
    class Abandoned(Exception):
        pass

    def send_then_fail() -> str:
        with batching.batch():
            sent.append(record_run.apply_async(args=["a", "k"], queue=QUEUE))
            raise Abandoned

    sent: list = []
    with pytest.raises(Abandoned):
        send_then_fail()
    result = sent[0]
    assert not TaskRecord.objects.filter(task_id=result.id).exists()
    assert not broker(result.id)


def test_a_nested_batch_joins_the_outer_one(broker):
    with batching.batch():
        with batching.batch():
            inner = record_run.apply_async(args=["inner", "k"], queue=QUEUE)
        assert not TaskRecord.objects.filter(task_id=inner.id).exists()  # held until the outer block ends
        outer = record_run.apply_async(args=["outer", "k"], queue=QUEUE)
    assert TaskRecord.objects.filter(task_id__in=[inner.id, outer.id]).count() == 2
    assert broker(inner.id)
    assert broker(outer.id)


def test_a_bulk_insert_writes_a_repeated_id_once_and_keeps_an_existing_record():
    existing = records.insert_published(task_id="kept", task_name="tests.record_run", args=[], kwargs={}, queue=QUEUE)
    TaskRecord.objects.filter(pk=existing.pk).update(state=TaskState.STARTED, resent_count=2)
    row = {"task_name": "tests.record_run", "args": ["a"], "kwargs": {}, "queue": QUEUE}

    records.insert_published_many(
        [{**row, "task_id": "twice"}, {**row, "task_id": "twice", "args": ["b"]}, {**row, "task_id": "kept"}]
    )

    assert list(TaskRecord.objects.filter(task_id="twice").values_list("args", flat=True)) == [["b"]]
    kept = TaskRecord.objects.get(task_id="kept")
    assert (kept.pk, kept.state, kept.resent_count, kept.args) == (existing.pk, TaskState.STARTED, 2, ["a"])
