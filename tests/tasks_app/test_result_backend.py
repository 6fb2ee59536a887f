"""The result backend's state writes (tasks_app.result_backend), against the real database."""

import pytest
from celery import states
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
