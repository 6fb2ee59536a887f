"""celery_worker_tasks_active's source: the STARTED records per worker, kept by triggers (migration 0003)."""

import pytest

from monitoring.counters import running_per_worker
from tasks_app.models import TaskRecord, TaskState

pytestmark = pytest.mark.django_db


def started_per_worker() -> dict[str, float]:
    records = TaskRecord.objects.filter(state=TaskState.STARTED).exclude(worker="")
    return {
        worker: float(records.filter(worker=worker).count()) for worker in set(records.values_list("worker", flat=True))
    }


def test_the_running_count_follows_the_records_through_every_write():
    # given: records published, then started on two workers
    records = [TaskRecord.objects.create(task_id=f"run-{i}", task_name="t", queue="default") for i in range(5)]
    for i, record in enumerate(records):
        TaskRecord.objects.filter(pk=record.pk).update(state=TaskState.STARTED, worker=f"w{i % 2}@host")
    assert running_per_worker() == started_per_worker() == {"w0@host": 3.0, "w1@host": 2.0}
    # when: one finishes, one is redelivered to the other worker, one is deleted, one inserted as started
    TaskRecord.objects.filter(pk=records[0].pk).update(state=TaskState.SUCCESS)
    TaskRecord.objects.filter(pk=records[1].pk).update(worker="w0@host")
    TaskRecord.objects.filter(pk=records[2].pk).delete()
    TaskRecord.objects.create(
        task_id="run-x", task_name="t", queue="default", state=TaskState.STARTED, worker="w2@host"
    )
    # then
    assert running_per_worker() == started_per_worker() == {"w0@host": 2.0, "w1@host": 1.0, "w2@host": 1.0}
