"""The cleanup job deletes old finished tasks and their results, in batches, and nothing else."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_results.models import TaskResult

from tasks_app.models import TaskRecord, TaskState
from tasks_app.tasks.maintenance_tasks import cleanup_finished_tasks
from tests.factories import TaskRecordFactory
from tests.support.waiting import wait_for

DAY = timedelta(days=1)


def make_task(task_id: str, state: str, age: timedelta, *, with_result: bool = True, **fields) -> TaskRecord:
    """A record (and its TaskResult) as old as `age`: created then, finished then if finished."""
    at = timezone.now() - age
    record = TaskRecordFactory(task_id=task_id, task_name="t", queue="default", state=state, **fields)
    done_at = at if state in (TaskState.SUCCESS, TaskState.FAILURE, TaskState.REVOKED) else None
    TaskRecord.objects.filter(pk=record.pk).update(created_at=at, done_at=done_at)
    if with_result:
        TaskResult.objects.create(task_id=task_id, status=state)
        TaskResult.objects.filter(task_id=task_id).update(date_done=at)  # date_done is auto_now
    return record


@pytest.fixture
def tasks():
    old_success = make_task("old-success", TaskState.SUCCESS, 40 * DAY)
    make_task("old-failure", TaskState.FAILURE, 35 * DAY)
    make_task("old-revoked", TaskState.REVOKED, 31 * DAY, with_result=False)
    make_task("old-retry-of-old", TaskState.SUCCESS, 32 * DAY, retry_of=old_success)
    make_task("recent-success", TaskState.SUCCESS, 2 * DAY, retry_of=old_success)
    make_task("old-pending", TaskState.PENDING, 60 * DAY)
    make_task("old-started", TaskState.STARTED, 60 * DAY)
    make_task("old-retry", TaskState.RETRY, 60 * DAY)
    # a result with no record (sent before records existed), and a fresh one
    TaskResult.objects.create(task_id="orphan-old", status="SUCCESS")
    TaskResult.objects.filter(task_id="orphan-old").update(date_done=timezone.now() - 50 * DAY)
    TaskResult.objects.create(task_id="orphan-recent", status="SUCCESS")


EXPECTED_LEFT = {"recent-success", "old-pending", "old-started", "old-retry"}


@pytest.mark.django_db
def test_cleanup_deletes_only_finished_tasks_older_than_the_age(tasks, django_assert_max_num_queries):
    # when the job runs with a 30-day age and batches of 2
    report = cleanup_finished_tasks(older_than_days=30, batch_size=2)

    # then old finished records and their results are gone; unfinished and recent ones stay
    assert set(TaskRecord.objects.values_list("task_id", flat=True)) == EXPECTED_LEFT
    assert set(TaskResult.objects.values_list("task_id", flat=True)) == EXPECTED_LEFT | {"orphan-recent"}
    assert report == {"records_deleted": 4, "results_deleted": 4, "more": False}
    # and the retry of a deleted record keeps its row, unlinked
    assert TaskRecord.objects.get(task_id="recent-success").retry_of is None


@pytest.mark.django_db
def test_the_age_is_configurable(tasks, settings):
    # given the age set to 34 days
    settings.TASK_CLEANUP_AFTER_DAYS = 34

    # when the job runs with its defaults
    cleanup_finished_tasks()

    # then only tasks finished more than 34 days ago are gone
    assert set(TaskRecord.objects.values_list("task_id", flat=True)) == EXPECTED_LEFT | {
        "old-revoked",
        "old-retry-of-old",
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.e2e
def test_a_run_out_of_time_queues_itself_for_the_rest(tasks, settings, celery_worker):
    # given a time budget that ends after the first batch
    settings.TASK_CLEANUP_TIME_BUDGET = 0

    # when the job runs in this process with batches of 1
    report = cleanup_finished_tasks(older_than_days=30, batch_size=1)

    # then it stopped early, and the copies it queued (run by a real worker) finished the work: the
    # records first, then (in a later copy) the old result without a record
    assert report["more"] is True
    wait_for(
        lambda: (
            set(TaskRecord.objects.exclude(task_name=cleanup_finished_tasks.name).values_list("task_id", flat=True))
            == EXPECTED_LEFT
            and not TaskResult.objects.filter(task_id="orphan-old").exists()
        ),
        timeout=60,
        what="the re-queued cleanup to finish",
    )
    assert TaskResult.objects.filter(task_id="orphan-recent").exists()
