"""POST /workers/shutdown is a warm shutdown: the running task finishes, a reserved one goes back to the queue."""

import uuid

import pytest
from django.contrib.auth import get_user_model

from claw_ai.celery import celery_app
from tasks_app.models import TaskRecord, TaskState
from tests.support import tasks as support_tasks
from tests.support.schema import client_for
from tests.support.waiting import wait_for
from tests.tasks_app.api.conftest import API, grant_operator
from tests.tasks_app.api.test_submit_and_read import wait_status

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture
def staff_client():
    """An operator, granted worker control through the Operators group."""
    return client_for(grant_operator(get_user_model().objects.create_user("ops", password="pw", is_staff=True)))


def reserved_by(worker_name: str) -> list[str]:
    reserved = celery_app.control.inspect(destination=[worker_name], timeout=1).reserved() or {}
    return [request["id"] for request in reserved.get(worker_name, [])]


def test_shutdown_finishes_the_running_task_and_hands_back_the_reserved_one(broker, staff_client, start_worker):
    # given a one-process worker on its own queue, running a task that waits for a key,
    # and holding a second task it has reserved but not started (it prefetches two)
    queue, key, ran_key = f"q-{uuid.uuid4().hex[:6]}", f"go:{uuid.uuid4().hex}", f"ran:{uuid.uuid4().hex}"
    first = start_worker(queues=[queue], concurrency=1, extra_args=("--prefetch-multiplier", "2"))
    running = celery_app.send_task("tests.wait_for_key", args=[key, 60], queue=queue).id
    wait_status(staff_client, running, "STARTED")
    reserved = celery_app.send_task("tests.record_run", args=["reserved", ran_key], queue=queue).id
    wait_for(lambda: reserved in reserved_by(first.name), timeout=15, what="the worker to reserve the second task")

    # when staff shut the worker down, and only then the running task is allowed to finish
    response = staff_client.post(f"{API}/workers/shutdown", {"destination": [first.name]}, format="json")
    assert response.status_code == 200
    wait_for(lambda: "Got shutdown from remote" in first.log_text(), timeout=15, what="the worker to get the shutdown")
    assert first.process.poll() is None, "the worker left before its running task finished"
    support_tasks.test_redis().set(key, 1)

    # then the running task ends SUCCESS and the worker exits by itself, cleanly
    wait_status(staff_client, running, "SUCCESS")
    wait_for(lambda: first.process.poll() is not None, timeout=30, what="the worker to exit")
    assert first.process.returncode == 0, first.log_text()
    # and the reserved task did not run there: it is still PENDING, back in its queue
    assert support_tasks.test_redis().lrange(ran_key, 0, -1) == []
    assert TaskRecord.objects.get(task_id=reserved).state == TaskState.PENDING

    # and a worker started on the queue runs it, once
    second = start_worker(queues=[queue], concurrency=1)
    wait_status(staff_client, reserved, "SUCCESS")
    assert TaskRecord.objects.get(task_id=reserved).worker == second.name
    assert support_tasks.test_redis().lrange(ran_key, 0, -1) == [b"reserved"]
