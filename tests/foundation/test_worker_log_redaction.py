"""Worker logs carry task ids, sizes and timings, not users' message text (claw_ai.log_redaction).

Real workers, reading their own log files: the redaction must hold in the processes that run the
tasks (prefork children of a worker whose root logger Celery took over), not only in this one.
"""

import re
import uuid

import pytest
from django.contrib.auth import get_user_model

from tasks_app.models import TaskRecord, TaskState
from tasks_app.services import submit_task
from tests.support.schema import client_for
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

AI_TASK = "tasks_app.tasks.ai_tasks.generate_ai_response"


def marker() -> str:
    return f"secret-{uuid.uuid4().hex}"


def finished(task_id: str, state: str) -> TaskRecord:
    return wait_for(
        lambda: TaskRecord.objects.filter(task_id=task_id, state=state).first(), timeout=30, what=f"{task_id} {state}"
    )


def log_line(worker, *needles: str) -> str:
    """The first line of the worker's log holding every needle (waited for: the log may lag the record)."""

    def found():
        return next((line for line in worker.log_text().splitlines() if all(n in line for n in needles)), None)

    return wait_for(found, timeout=15, what=f"a log line with {needles}")


def test_an_ai_reply_is_logged_by_id_and_size_not_by_its_text(celery_worker):
    # given a user's message carrying a unique marker
    secret = marker()
    api = client_for(get_user_model().objects.create_user("log-reader", password="pw"))

    # when it is answered by a real worker
    response = api.post(
        "/api/v1/tasks/ai/generate",
        {"conversation_id": f"conv_{secret[-8:]}", "user_id": "u1", "user_message": f"hello {secret}"},
        format="json",
    )
    task_id = response.json()["task_id"]
    finished(task_id, TaskState.SUCCESS)
    reply = api.get(f"/api/v1/tasks/status/{task_id}").json()["result"]["response"]
    assert secret in reply  # (the offline model quotes the message)

    # then the log says which task succeeded, how fast, and how big its result was
    line = log_line(celery_worker, task_id, "succeeded in")
    assert re.search(r"<dict: \d+ keys, \d+ chars>", line), line
    # and holds neither the message nor the reply
    log = celery_worker.log_text()
    assert secret not in log
    assert "You said" not in log


def test_retries_and_failures_are_logged_by_exception_type_not_message(celery_worker):
    # given a task that retries once, then fails, each time with the marker in its exception
    secret = marker()
    record = submit_task(task_name="tests.retry_with_message", args=[secret])

    # when a real worker runs it
    finished(record.task_id, TaskState.FAILURE)

    # then the log names the task, the exception type and the size of its message, never the message
    retry = log_line(celery_worker, record.task_id, "retry:")
    failure = log_line(celery_worker, record.task_id, "raised unexpected")
    assert f"ValueError(<{len(secret)} chars>)" in retry
    assert f"ValueError(<{len(secret)} chars>)" in failure
    assert f"ValueError: <{len(secret)} chars>" in celery_worker.log_text()  # the traceback's last line
    assert secret not in celery_worker.log_text()


def test_log_message_text_true_shows_the_text(start_worker):
    # given a worker started with LOG_MESSAGE_TEXT=true, alone on its queue
    queue = f"log-text-{uuid.uuid4().hex[:6]}"
    worker = start_worker(queues=[queue], concurrency=1, env={"LOG_MESSAGE_TEXT": "true"})
    secret = marker()

    # when it answers a message carrying the marker
    record = submit_task(
        task_name=AI_TASK,
        kwargs={"conversation_id": f"conv_{secret[-8:]}", "user_id": "u1", "user_message": f"hello {secret}"},
        queue=queue,
    )
    finished(record.task_id, TaskState.SUCCESS)

    # then its log shows the reply, marker included
    assert f"You said: hello {secret}" in log_line(worker, record.task_id, "succeeded in")
