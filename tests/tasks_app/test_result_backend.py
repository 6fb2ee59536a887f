"""The result backend's state writes (tasks_app.result_backend), against the real database."""

import pytest
from celery import states
from celery.app.task import Context
from django_celery_results.models import TaskResult

from claw_ai.celery import celery_app
from tasks_app.models import TaskRecord, TaskState
from tests.factories import TaskRecordFactory

pytestmark = pytest.mark.django_db


def record(state: str = TaskState.PENDING) -> TaskRecord:
    return TaskRecordFactory(task_name="tests.retry_once", queue="default", state=state)


def test_a_late_retry_never_reopens_a_task_its_resent_run_finished():
    # given a task whose re-sent run already succeeded (Celery re-publishes before writing RETRY)
    task = record()
    celery_app.backend.store_result(task.task_id, 1, states.SUCCESS)

    # when the first run's RETRY write arrives late
    celery_app.backend.store_result(task.task_id, ValueError("again"), states.RETRY)

    # then the record and its TaskResult stay SUCCESS
    assert TaskRecord.objects.get(pk=task.pk).state == TaskState.SUCCESS
    assert TaskResult.objects.get(task_id=task.task_id).status == states.SUCCESS


def test_a_retry_of_a_running_task_is_written():
    task = record(TaskState.STARTED)
    celery_app.backend.store_result(task.task_id, ValueError("again"), states.RETRY)
    assert TaskRecord.objects.get(pk=task.pk).state == TaskState.RETRY


def test_revoked_stays_revoked():
    task = record()
    celery_app.backend.store_result(task.task_id, None, states.REVOKED)
    celery_app.backend.store_result(task.task_id, 1, states.SUCCESS)
    assert TaskRecord.objects.get(pk=task.pk).state == TaskState.REVOKED
    assert TaskResult.objects.get(task_id=task.task_id).status == states.REVOKED


def test_the_started_write_tells_the_task_class_whether_it_may_run():
    # given a queued task and a cancelled one
    queued, cancelled = record(), record(TaskState.REVOKED)
    request = Context(hostname="worker@test", retries=0)

    # then the STARTED write lets the first run, and refuses the second
    assert celery_app.backend.mark_started(queued.task_id, request=request) is True
    assert celery_app.backend.mark_started(cancelled.task_id, request=request) is False

    # and the record says which
    started = TaskRecord.objects.get(pk=queued.pk)
    assert (started.state, started.worker) == (TaskState.STARTED, "worker@test")
    assert TaskResult.objects.get(task_id=queued.task_id).status == states.STARTED
    assert TaskRecord.objects.get(pk=cancelled.pk).state == TaskState.REVOKED


def test_the_task_class_writes_started_itself():
    # Celery's tracer must not write STARTED a second time: ClawTask's write is the cancellation check.
    task = celery_app.tasks["tasks_app.tasks.maintenance_tasks.health_check"]
    assert task.track_started is False
    assert celery_app.conf.task_track_started
