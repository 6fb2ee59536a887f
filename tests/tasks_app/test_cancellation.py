"""The cancellation check of tasks waiting on I/O: the cache flag first, the record as backstop."""

import uuid

import pytest

from tasks_app.cancellation import CancellationWatch, flag_cancelled
from tasks_app.models import TaskRecord, TaskState

pytestmark = pytest.mark.django_db


def record(state: str) -> TaskRecord:
    return TaskRecord.objects.create(task_id=str(uuid.uuid4()), task_name="t", queue="default", state=state)


def test_a_flagged_task_is_cancelled_without_asking_the_database(django_assert_num_queries):
    # given a running task whose cancellation was flagged in the cache
    task = record(TaskState.STARTED)
    flag_cancelled(task.task_id)
    watch = CancellationWatch(task.task_id)

    # when the waiting task checks, then it stops, with no query
    with django_assert_num_queries(0):
        assert watch() is True


def test_a_revoked_record_without_a_flag_still_stops_the_task():
    # given a record cancelled while the cache flag was lost
    task = record(TaskState.REVOKED)

    # then the first check (and the next after a second) reads the record
    assert CancellationWatch(task.task_id)() is True


def test_a_running_task_reads_its_record_at_most_once_a_second(django_assert_num_queries):
    task = record(TaskState.STARTED)
    watch = CancellationWatch(task.task_id)
    with django_assert_num_queries(1):
        assert [watch() for _ in range(5)] == [False] * 5
