"""A delayed task cancelled through the API shows in Flower as REVOKED (not RECEIVED until its eta)."""

import base64
import json
import urllib.error
import urllib.request

import pytest

from tests.foundation.test_flower import flower
from tests.support.waiting import wait_for
from tests.tasks_app.api.conftest import API

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

USER, PASSWORD = "flower-user", "flower-secret"


def flower_get(url: str) -> tuple[int, str]:
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


def flower_state(url: str, task_id: str) -> str | None:
    status, body = flower_get(f"{url}/api/task/info/{task_id}")
    return json.loads(body).get("state") if status == 200 else None


def flower_hears_from(url: str, worker: str) -> bool:
    """Flower's event stream has delivered something of `worker` (a heartbeat every 2 s): events
    sent from now on reach it (before its receiver is connected, they go nowhere)."""
    status, body = flower_get(f"{url}/workers?json=1")
    return status == 200 and any(entry.get("hostname") == worker for entry in json.loads(body)["data"])


def test_a_cancelled_delayed_task_shows_as_revoked_in_flower(celery_worker, alice_client):
    with flower(env={"FLOWER_BASIC_AUTH": f"{USER}:{PASSWORD}"}) as (url, _pid):
        wait_for(lambda: flower_hears_from(url, celery_worker.name), timeout=30, what="Flower's event stream")
        # given a reply delayed by five minutes, which a worker has received and holds for later
        body = {"conversation_id": "conv_later", "user_message": "later", "user_id": "u1", "countdown": 300}
        response = alice_client.post(f"{API}/ai/generate", body, format="json")
        assert response.status_code == 202
        task_id = response.json()["task_id"]
        wait_for(lambda: flower_state(url, task_id) == "RECEIVED", timeout=30, what="Flower to see the task received")

        # when it is cancelled through the API
        assert alice_client.post(f"{API}/cancel/{task_id}").json()["status"] == "REVOKED"

        # then Flower's task page says REVOKED, on the worker that held it, long before the eta
        wait_for(lambda: flower_state(url, task_id) == "REVOKED", timeout=30, what="Flower to see the task revoked")
        status, page = flower_get(f"{url}/task/{task_id}")
        assert status == 200
        assert "REVOKED" in page
        _, info = flower_get(f"{url}/api/task/info/{task_id}")
        assert json.loads(info)["worker"] == celery_worker.name
