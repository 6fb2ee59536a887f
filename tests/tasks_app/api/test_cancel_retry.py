"""POST /cancel and /retry through HTTP with real workers; /stats agreeing with /list."""

import uuid

import pytest
from django_celery_results.models import TaskResult

from claw_ai.celery import celery_app
from tasks_app.models import TaskRecord, TaskState
from tests.factories import TaskRecordFactory
from tests.support import tasks as support_tasks
from tests.support.waiting import wait_for
from tests.tasks_app.api.conftest import API
from tests.tasks_app.api.test_submit_and_read import wait_status

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def ran(list_key: str) -> list[str]:
    return [label.decode() for label in support_tasks.test_redis().lrange(list_key, 0, -1)]


def send_record_run(label: str, list_key: str, **options) -> str:
    return celery_app.send_task("tests.record_run", args=[label, list_key], **options).id


def test_cancel_a_queued_task_it_never_runs(broker, staff_client, start_worker):
    # given a task queued where no worker listens yet
    queue, key = f"q-{uuid.uuid4().hex[:6]}", f"ran:{uuid.uuid4().hex}"
    cancelled = send_record_run("cancelled", key, queue=queue)

    # when it is cancelled
    response = staff_client.post(f"{API}/cancel/{cancelled}")

    # then it reads REVOKED at once, and a worker started later (which never heard the revoke: a
    # process of its own, not the session's worker) skips it
    assert response.status_code == 200
    assert response.json()["status"] == "REVOKED"
    assert staff_client.get(f"{API}/status/{cancelled}").json()["status"] == "REVOKED"
    start_worker(queues=[queue], concurrency=1)
    send_record_run("marker", key, queue=queue)
    wait_for(lambda: "marker" in ran(key), timeout=30, what="the marker task")
    assert ran(key) == ["marker"]
    assert staff_client.get(f"{API}/status/{cancelled}").json()["status"] == "REVOKED"


def test_cancel_a_delayed_task_it_never_runs(broker, staff_client, start_worker):
    # given a task delayed by two seconds, and a marker due one second after it, held by a worker
    queue, key = f"q-{uuid.uuid4().hex[:6]}", f"ran:{uuid.uuid4().hex}"
    start_worker(queues=[queue], concurrency=2)
    delayed = send_record_run("cancelled", key, countdown=2, queue=queue)
    send_record_run("marker", key, countdown=3, queue=queue)

    # when the delayed task is cancelled
    response = staff_client.post(f"{API}/cancel/{delayed}/")

    # then it reads REVOKED and, once the marker has run, it has not
    assert response.status_code == 200
    assert TaskResult.objects.get(task_id=delayed).status == "REVOKED"
    wait_for(lambda: "marker" in ran(key), timeout=30, what="the marker task")
    assert ran(key) == ["marker"]
    assert staff_client.get(f"{API}/status/{delayed}").json()["status"] == "REVOKED"


def test_cancel_a_running_task_stops_it(celery_worker, staff_client):
    # given a task that runs until a key is set
    key = f"go:{uuid.uuid4().hex}"
    running = celery_app.send_task("tests.wait_for_key", args=[key, 60]).id
    wait_status(staff_client, running, "STARTED")

    # when it is cancelled
    response = staff_client.post(f"{API}/cancel/{running}")

    # then it reads REVOKED at once and the worker stops running it
    assert response.status_code == 200
    assert staff_client.get(f"{API}/status/{running}").json()["status"] == "REVOKED"

    def no_longer_active():
        active = celery_app.control.inspect(destination=[celery_worker.name], timeout=1).active() or {}
        return celery_worker.name in active and all(t["id"] != running for t in active[celery_worker.name])

    wait_for(no_longer_active, timeout=30, what="the worker to stop the task")
    support_tasks.test_redis().set(key, 1)
    assert TaskRecord.objects.get(task_id=running).state == TaskState.REVOKED
    assert TaskResult.objects.get(task_id=running).status == "REVOKED"


def test_cancel_a_finished_task_is_409(celery_worker, staff_client):
    done = send_record_run("done", f"ran:{uuid.uuid4().hex}")
    wait_status(staff_client, done, "SUCCESS")

    response = staff_client.post(f"{API}/cancel/{done}")

    assert response.status_code == 409
    assert "SUCCESS" in response.json()["message"]


def test_cancel_unknown_task_is_404(staff_client):
    assert staff_client.post(f"{API}/cancel/{uuid.uuid4()}").status_code == 404


def test_retry_a_failure_runs_it_again_with_lineage(celery_worker, staff_client):
    # given a failed task
    failed = celery_app.send_task("tests.fail", args=["boom"], queue="knowledge_default", priority=2).id
    status = wait_status(staff_client, failed, "FAILURE")
    assert "ValueError: boom" in status["error"]
    assert "Traceback" in status["traceback"]

    # when it is retried
    response = staff_client.post(f"{API}/retry/{failed}")

    # then a new task with a new id re-runs the same call, pointing back at the failure
    assert response.status_code == 202
    body = response.json()
    assert body["retry_of"] == failed
    assert body["task_id"] != failed
    assert body["status"] == "PENDING"
    again = wait_status(staff_client, body["task_id"], "FAILURE")
    assert again["retry_of"] == failed
    assert (again["task_name"], again["queue"], again["priority"], again["args"]) == (
        "tests.fail",
        "knowledge_default",
        2,
        ["boom"],
    )


def test_retry_a_cancelled_task_and_409_while_pending(staff_client, consume_queue):
    # given a task cancelled while queued where nobody listens
    queue, key = f"q-{uuid.uuid4().hex[:6]}", f"ran:{uuid.uuid4().hex}"
    record = TaskRecord.objects.get(task_id=send_record_run("again", key, queue=queue))
    assert staff_client.post(f"{API}/cancel/{record.task_id}").status_code == 200

    # when it is retried, its retry is pending: retrying that one again is refused
    retry = staff_client.post(f"{API}/retry/{record.task_id}").json()
    assert staff_client.post(f"{API}/retry/{retry['task_id']}").status_code == 409
    # and retrying the original again returns the pending retry instead of sending a second one
    again = staff_client.post(f"{API}/retry/{record.task_id}")
    assert again.status_code == 200
    assert again.json()["task_id"] == retry["task_id"]
    assert record.retried_by.count() == 1

    # then a worker on the queue runs the retry (and not the cancelled original)
    consume_queue(queue)
    wait_status(staff_client, retry["task_id"], "SUCCESS")
    assert ran(key) == ["again"]


def test_retry_when_broker_is_down_is_503_and_keeps_no_record(alice, alice_client, broker_down):
    failed = TaskRecordFactory(task_name="tests.fail", queue="default", state="FAILURE", submitted_by=alice)

    response = alice_client.post(f"{API}/retry/{failed.task_id}")

    assert response.status_code == 503
    assert list(TaskRecord.objects.values_list("task_id", flat=True)) == [failed.task_id]


def test_stats_agree_with_list_after_a_mixed_run(celery_worker, staff_client):
    # given tasks that succeed, fail, are cancelled and wait
    key = f"ran:{uuid.uuid4().hex}"
    succeeded = [send_record_run(str(n), key) for n in range(3)]
    failed = [celery_app.send_task("tests.fail", args=["x"]).id for _ in range(2)]
    waiting = send_record_run("later", key, countdown=3600)
    cancelled = send_record_run("never", key, countdown=3600)
    staff_client.post(f"{API}/cancel/{cancelled}")
    for task_id in succeeded:
        wait_status(staff_client, task_id, "SUCCESS")
    for task_id in failed:
        wait_status(staff_client, task_id, "FAILURE")

    # when stats and list are read
    stats = staff_client.get(f"{API}/stats").json()
    listed = staff_client.get(f"{API}/list", {"limit": 500}).json()["results"]

    # then they agree, by state and by queue
    by_state = {state.lower(): sum(t["status"] == state for t in listed) for state in TaskState.values}
    assert stats["total_tasks"] == len(listed) == 7
    assert {state: stats[state] for state in by_state} == by_state
    assert (stats["success"], stats["failure"], stats["revoked"], stats["pending"]) == (3, 2, 1, 1)
    assert stats["queues"]["default"]["total"] == 7
    # (workers are discovered in the background: null until the first discovery is done)
    wait_for(lambda: staff_client.get(f"{API}/stats").json()["workers"], timeout=10, what="live workers in /stats")
    assert waiting in {t["task_id"] for t in listed}


def test_retry_of_a_task_no_worker_knows_is_400_and_sends_nothing(alice, alice_client):
    failed = TaskRecordFactory(task_name="nobody.knows.this", queue="default", state="FAILURE", submitted_by=alice)

    response = alice_client.post(f"{API}/retry/{failed.task_id}")

    assert response.status_code == 400
    assert "nobody.knows.this" in response.json()["errors"]["task_id"][0]
    assert list(TaskRecord.objects.values_list("task_id", flat=True)) == [failed.task_id]
