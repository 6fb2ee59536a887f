"""LOG_FORMAT=json: JSON lines carrying the task and request context, in web and worker processes."""

import io
import json
import logging

import pytest
from django.test import Client

from claw_ai.celery import celery_app
from monitoring.logs import ContextFilter, JsonFormatter
from tasks_app.models import TaskRecord, TaskState
from tests.support.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def json_lines():
    """What the root logger writes through the JSON formatter during the test."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    logging.getLogger().addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logging.getLogger().removeHandler(handler)


def test_a_request_gets_an_id_on_its_log_lines_and_its_tasks(json_lines, metrics_token):
    # when: a request that logs (an unknown API path: django.request warns) and one that publishes
    response = Client().get("/api/v1/no-such-thing", HTTP_X_REQUEST_ID="req-abc-123")
    # then
    assert response["X-Request-ID"] == "req-abc-123"
    lines = [line for line in json_lines() if line.get("request_id") == "req-abc-123"]
    assert lines
    assert all(line["level"] and line["message"] for line in lines)
    # and a made-up id replaces one that is not sane
    assert Client().get("/metrics", HTTP_X_REQUEST_ID="bad id\n").get("X-Request-ID") != "bad id\n"


@pytest.mark.e2e
def test_a_worker_logs_json_lines_with_the_task_context(start_worker):
    # given
    worker = start_worker(queues=["test_json_logs"], concurrency=1, env={"LOG_FORMAT": "json"})
    # when
    result = celery_app.send_task(
        "tests.fail", args=["logged on purpose"], queue="test_json_logs", headers={"claw_request_id": "req-xyz"}
    )
    wait_for(lambda: TaskRecord.objects.filter(task_id=result.id, state=TaskState.FAILURE).exists(), what="failure")

    # then: log lines are JSON (the start-up banner is printed, not logged), and the failure's
    # line names the task, its queue and the request that published it
    def failure_line():
        lines = [json.loads(line) for line in worker.log_text().splitlines() if line.startswith("{")]
        return next((line for line in lines if line.get("task_id") == result.id and line["level"] == "ERROR"), None)

    line = wait_for(failure_line, what="the failure's log line")
    assert line["task_name"] == "tests.fail"
    assert line["queue"] == "test_json_logs"
    assert line["request_id"] == "req-xyz"
    assert "logged on purpose" in line["message"] + line.get("exception", "")
