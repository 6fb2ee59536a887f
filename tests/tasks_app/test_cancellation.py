"""The cancellation check of tasks waiting on I/O: one monitor per process, the cache flag first,
the record as backstop; a waiting task's own check reads memory only."""

import pytest
from django.db import connection

from tasks_app.cancellation import CancellationMonitor, CancellationWatch, flag_cancelled
from tasks_app.models import TaskRecord, TaskState
from tests.factories import TaskRecordFactory
from tests.support.waiting import wait_for

# The monitor reads from its own thread, on its own connection: the records must be committed.
pytestmark = pytest.mark.django_db(transaction=True)


def record(state: str) -> TaskRecord:
    return TaskRecordFactory(task_name="t", queue="default", state=state)


@pytest.fixture
def monitor():
    monitor = CancellationMonitor()
    monitor.FLAG_INTERVAL = 0.05
    monitor.RECORD_INTERVAL = 0.1
    return monitor


def test_a_flagged_task_is_cancelled_and_the_check_asks_nothing(monitor, django_assert_num_queries):
    # given a running task being watched
    task = record(TaskState.STARTED)
    with CancellationWatch(task.task_id, monitor) as should_stop:
        # when its cancellation is flagged in the cache, then the watch turns true
        flag_cancelled(task.task_id)
        wait_for(should_stop, timeout=10, what="the flag to be seen")
        # and the task's own check costs no query
        with django_assert_num_queries(0):
            assert should_stop() is True


def test_a_revoked_record_without_a_flag_still_stops_the_task(monitor):
    # given a watched task whose record was cancelled while the cache flag was lost
    task = record(TaskState.STARTED)
    with CancellationWatch(task.task_id, monitor) as should_stop:
        TaskRecord.objects.filter(pk=task.pk).update(state=TaskState.REVOKED)
        # then the monitor's record check finds it
        wait_for(should_stop, timeout=10, what="the REVOKED record to be seen")


def test_a_running_task_is_not_cancelled_and_is_forgotten_after_its_watch(monitor):
    running, other = record(TaskState.STARTED), record(TaskState.STARTED)
    with CancellationWatch(running.task_id, monitor) as should_stop:
        # after several rounds, including record checks, the running task is not cancelled
        wait_for(lambda: monitor.rounds >= 5, timeout=10, what="five monitor rounds")
        assert should_stop() is False
    # a task cancelled after its watch ended is no longer looked at, nor remembered
    flag_cancelled(running.task_id)
    with CancellationWatch(other.task_id, monitor):
        rounds = monitor.rounds
        wait_for(lambda: monitor.rounds >= rounds + 3, timeout=10, what="three more rounds")
    assert monitor.cancelled(running.task_id) is False


def test_without_a_task_id_nothing_is_watched(monitor):
    with CancellationWatch("", monitor) as should_stop:
        assert should_stop() is False
    assert monitor.rounds == 0


def test_an_idle_monitor_holds_no_database_connection(monitor):
    # given a monitor that checked a task's record (on a connection of its own thread)
    task = record(TaskState.STARTED)
    with CancellationWatch(task.task_id, monitor):
        wait_for(lambda: monitor.rounds >= 3, timeout=10, what="a record check")
        assert wait_for(lambda: monitor_sessions(task) == 1, timeout=10, what="the monitor's connection")

    # when its last watch ends, then it closes that connection while it waits for the next
    wait_for(lambda: monitor_sessions(task) == 0, timeout=10, what="the idle monitor to close its connection")


def monitor_sessions(task: TaskRecord) -> int:
    """Sessions of the test database whose last query was the monitor's record check of `task`."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND query LIKE %s AND query LIKE %s",
            ["%REVOKED%", f"%{task.task_id}%"],
        )
        return cursor.fetchone()[0]
