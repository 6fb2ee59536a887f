"""A task sent without a priority runs at the default, 5, and shows 5 wherever it is shown."""

import re
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from claw_ai.celery import celery_app
from tests.support.tasks import record_run
from tests.support.waiting import wait_for
from tests.tasks_app.api.conftest import API

pytestmark = pytest.mark.django_db(transaction=True)  # tasks are published outside any transaction
RECORD_RUN = record_run.name  # the name, read while the task is registered


@pytest.fixture
def publisher_without_task_modules():
    """Publish as the web process does: by name, with the task modules not imported (only workers
    import them), so Celery knows no task defaults for the name. This test process imported them."""
    hidden = {name: celery_app.tasks.pop(name) for name in list(celery_app.tasks) if not name.startswith("celery.")}
    yield
    celery_app.tasks.update(hidden)


def test_a_task_sent_without_a_priority_shows_5_in_status_list_and_admin(alice_client, publisher_without_task_modules):
    # when a reply is submitted through the API without a priority
    response = alice_client.post(
        f"{API}/ai/generate", {"conversation_id": "conv_p", "user_message": "hi", "user_id": "u1"}, format="json"
    )
    assert response.status_code == 202
    task_id = response.json()["task_id"]

    # then /status and /list show priority 5
    assert alice_client.get(f"{API}/status/{task_id}").json()["priority"] == 5
    listed = {task["task_id"]: task for task in alice_client.get(f"{API}/list").json()["results"]}
    assert listed[task_id]["priority"] == 5

    # and so does the admin's task list
    operator = Client()
    operator.force_login(get_user_model().objects.create_superuser("operator", password="pw"))
    page = operator.get("/admin/tasks_app/taskrecord/").content.decode()
    assert re.search(r'<td class="field-priority">5</td>', page), page


@pytest.mark.e2e
def test_a_task_sent_without_a_priority_runs_between_4_and_6(
    start_worker, redis_client, publisher_without_task_modules
):
    # given, queued with no worker yet, tasks of priority 4, none (sent by name by a publisher that
    # knows no defaults for it, as the web process) and 6, interleaved
    queue = f"default-priority-probe-{uuid.uuid4().hex[:6]}"
    order_key = f"order:{queue}"
    for i in range(3):
        celery_app.send_task(RECORD_RUN, args=[f"p4-{i}", order_key], queue=queue, priority=4)
        celery_app.send_task(RECORD_RUN, args=[f"p_-{i}", order_key], queue=queue)
        celery_app.send_task(RECORD_RUN, args=[f"p6-{i}", order_key], queue=queue, priority=6)

    # when one worker taking one message at a time works through them
    worker = start_worker(queues=[queue], concurrency=1, pool="solo")
    wait_for(lambda: redis_client.llen(order_key) == 9, timeout=60, what="all 9 tasks to run")
    worker.stop()

    # then the ones without a priority ran at 5: after the 6s, before the 4s
    order = [label.decode()[:2] for label in redis_client.lrange(order_key, 0, -1)]
    assert order == ["p6"] * 3 + ["p_"] * 3 + ["p4"] * 3, order
