"""Retry and cancel from the admin, through a real worker, with confirmation and an audit trail."""

import uuid

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.urls import reverse

from tasks_app.models import TaskRecord, TaskState
from tasks_app.services import submit_task
from tests.factories import StaffFactory
from tests.support.waiting import wait_for
from tests.tasks_app.admin.conftest import csrf_token_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

CHANGELIST = reverse("admin:tasks_app_taskrecord_changelist")


def state_of(record: TaskRecord) -> str:
    record.refresh_from_db()
    return record.state


def wait_for_state(record: TaskRecord, state: str, timeout: float = 30) -> TaskRecord:
    wait_for(lambda: state_of(record) == state, timeout=timeout, what=f"{record.task_id} to be {state}")
    return record


def run_action(client, action: str, records: list[TaskRecord]):
    """Select records on the changelist, pick the action, then confirm: as an operator does."""
    token = csrf_token_of(client.get(CHANGELIST))
    selection = {"action": action, "_selected_action": [record.pk for record in records], "index": 0}
    confirmation = client.post(CHANGELIST, {**selection, "csrfmiddlewaretoken": token})
    assert confirmation.status_code == 200, confirmation.content[:500]
    assert "Are you sure" in confirmation.content.decode()
    confirmed = client.post(
        CHANGELIST, {**selection, "post": "yes", "csrfmiddlewaretoken": csrf_token_of(confirmation)}, follow=True
    )
    assert confirmed.status_code == 200
    return confirmation, [str(message) for message in confirmed.context["messages"]]


def test_the_action_needs_a_csrf_token(admin_client):
    response = admin_client.post(CHANGELIST, {"action": "cancel_selected", "_selected_action": [1]})
    assert response.status_code == 403


def test_cancel_selected_stops_a_running_task_and_refuses_a_finished_one(admin_client, admin_user, celery_worker):
    # given a running task and a finished one
    key = f"release:{uuid.uuid4().hex}"
    running = wait_for_state(submit_task(task_name="tests.wait_for_key", args=[key, 60]), TaskState.STARTED)
    finished = wait_for_state(submit_task(task_name="tests.record_run", args=["x", f"runs:{key}"]), TaskState.SUCCESS)

    # when the operator cancels both from the admin
    confirmation, feedback = run_action(admin_client, "cancel_selected", [running, finished])

    # then the confirmation named the one that would be refused, the running task is REVOKED,
    # the finished one untouched, and the message says which was done and which refused, and why
    assert "will be refused" in confirmation.content.decode()
    assert state_of(running) == TaskState.REVOKED
    assert state_of(finished) == TaskState.SUCCESS
    assert any("Did cancel 1 task" in message and running.task_id in message for message in feedback), feedback
    assert any(
        "Refused to cancel 1 task" in message and finished.task_id in message and "SUCCESS" in message
        for message in feedback
    ), feedback
    # and the admin log records who cancelled what
    entry = LogEntry.objects.get(object_id=str(running.pk), action_flag=CHANGE)
    assert entry.user == admin_user
    assert "Cancelled" in entry.get_change_message()
    assert not LogEntry.objects.filter(object_id=str(finished.pk)).exists()


def test_retry_selected_runs_a_failed_task_again_under_a_new_id(admin_client, admin_user, celery_worker, redis_client):
    # given a failed task and a pending-forever one
    failed = wait_for_state(submit_task(task_name="tests.fail", args=["boom"]), TaskState.FAILURE)
    key = f"release:{uuid.uuid4().hex}"
    running = wait_for_state(submit_task(task_name="tests.wait_for_key", args=[key, 60]), TaskState.STARTED)

    # when the operator retries both
    _, feedback = run_action(admin_client, "retry_selected", [failed, running])

    # then the failed one was sent again (and failed again, through the worker), linked by retry_of
    retry = TaskRecord.objects.get(retry_of=failed)
    assert retry.task_id != failed.task_id
    assert (retry.task_name, retry.args, retry.queue) == (failed.task_name, failed.args, failed.queue)
    wait_for_state(retry, TaskState.FAILURE)
    # and the running one was refused with its state
    assert any("Did retry 1 task" in message and retry.task_id in message for message in feedback), feedback
    assert any("Refused to retry 1 task" in message and "STARTED" in message for message in feedback), feedback
    assert not TaskRecord.objects.filter(retry_of=running).exists()
    # and the admin log holds both sides, with the operator
    assert LogEntry.objects.get(object_id=str(failed.pk), action_flag=CHANGE).user == admin_user
    assert LogEntry.objects.get(object_id=str(retry.pk), action_flag=ADDITION).user == admin_user
    redis_client.set(key, 1)
    wait_for_state(running, TaskState.SUCCESS)


def test_a_cancelled_task_retried_from_the_admin_succeeds(admin_client, celery_worker, redis_client):
    # given a task cancelled while running
    key = f"release:{uuid.uuid4().hex}"
    record = wait_for_state(submit_task(task_name="tests.wait_for_key", args=[key, 60]), TaskState.STARTED)
    run_action(admin_client, "cancel_selected", [record])
    assert state_of(record) == TaskState.REVOKED

    # when it is retried from the admin and can now finish
    redis_client.set(key, 1)
    run_action(admin_client, "retry_selected", [record])

    # then the new run succeeds
    wait_for_state(TaskRecord.objects.get(retry_of=record), TaskState.SUCCESS)


def test_a_user_without_change_permission_gets_no_actions(client):
    # given a staff user who may only view task records
    from django.contrib.auth.models import Permission

    viewer = StaffFactory(username="viewer")
    viewer.user_permissions.add(Permission.objects.get(codename="view_taskrecord"))
    client.force_login(viewer)

    # then the list opens without the retry and cancel actions
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    assert "retry_selected" not in response.content.decode()
