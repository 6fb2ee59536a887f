"""GET /workers, POST /workers/pool/restart and /workers/shutdown against real workers."""

import os
import signal
import time

import pytest

from tests.support.waiting import wait_for
from tests.tasks_app.api.conftest import API

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def test_workers_lists_live_workers(celery_worker, staff_client):
    # when staff ask for the workers
    started = time.monotonic()
    response = staff_client.get(f"{API}/workers")
    elapsed = time.monotonic() - started

    # then the session worker is described, within about a second
    assert response.status_code == 200
    assert elapsed < 2
    worker = next(w for w in response.json()["workers"] if w["name"] == celery_worker.name)
    assert worker["pool"] == "prefork"
    assert worker["concurrency"] == 4
    assert set(worker["queues"]) >= {"ai_high_priority", "knowledge_default", "notification_default", "default"}
    assert worker["uptime"] >= 0
    assert worker["active"] == [] or isinstance(worker["active"], list)


def test_a_worker_that_does_not_reply_is_named(celery_worker, staff_client, start_worker):
    # given a worker that was seen, then stops answering (its process is frozen)
    silent = start_worker(queues=["default"], concurrency=1)
    assert silent.name in {w["name"] for w in staff_client.get(f"{API}/workers").json()["workers"]}
    os.kill(silent.process.pid, signal.SIGSTOP)
    try:
        # when the workers are listed
        started = time.monotonic()
        body = staff_client.get(f"{API}/workers").json()

        # then the answer still comes within about a second, naming the silent worker
        assert time.monotonic() - started < 2
        assert silent.name in body["not_replying"]
        assert celery_worker.name in {w["name"] for w in body["workers"]}
    finally:
        os.kill(silent.process.pid, signal.SIGCONT)


def test_worker_endpoints_are_for_staff_only(alice_client):
    assert alice_client.get(f"{API}/workers").status_code == 403
    assert alice_client.post(f"{API}/workers/pool/restart", {}, format="json").status_code == 403
    response = alice_client.post(f"{API}/workers/shutdown", {"all": True}, format="json")
    assert response.status_code == 403
    assert response.json()["message"]


def test_pool_restart_of_a_prefork_worker(staff_client, start_worker):
    worker = start_worker(queues=["default"], concurrency=1)

    response = staff_client.post(f"{API}/workers/pool/restart", {"destination": [worker.name]}, format="json")

    assert response.status_code == 200
    assert response.json()["results"] == [{"worker": worker.name, "ok": True, "message": "reload started"}]


def test_pool_restart_of_a_threads_worker_is_refused_clearly(staff_client, start_worker):
    worker = start_worker(queues=["default"], concurrency=1, pool="threads")

    response = staff_client.post(f"{API}/workers/pool/restart", {"destination": [worker.name]}, format="json")

    assert response.status_code == 409
    assert "threads pool cannot be restarted" in response.json()["message"]


def test_pool_restart_of_an_unknown_worker_is_404(staff_client):
    response = staff_client.post(f"{API}/workers/pool/restart", {"destination": ["nobody@nowhere"]}, format="json")

    assert response.status_code == 404
    assert "nobody@nowhere" in response.json()["message"]


@pytest.mark.parametrize("payload", [{}, {"all": False}, {"destination": []}, {"destination": ["a"], "all": True}])
def test_shutdown_needs_a_destination_or_all(staff_client, payload):
    response = staff_client.post(f"{API}/workers/shutdown", payload, format="json")

    assert response.status_code == 400
    assert response.json()["errors"]


def test_shutdown_of_one_worker(staff_client, start_worker):
    worker = start_worker(queues=["default"], concurrency=1)

    response = staff_client.post(f"{API}/workers/shutdown", {"destination": [worker.name]}, format="json")

    assert response.status_code == 200
    assert response.json()["results"] == [{"worker": worker.name, "ok": True, "message": "shutdown requested"}]
    wait_for(lambda: worker.process.poll() is not None, timeout=30, what="the worker to exit")
