"""The ASGI application (claw_ai.asgi) answers an API request from a thread of its own (the event loop only relays)."""

import asyncio
import functools
import json
import threading

import pytest
from asgiref.testing import ApplicationCommunicator
from rest_framework.authtoken.models import Token

from tasks_app.models import TaskState
from tests.factories import TaskRecordFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def asgi_get(path: str, headers: dict[str, str]) -> tuple[int, dict]:
    from claw_ai.asgi import application

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost"), *((k.lower().encode(), v.encode()) for k, v in headers.items())],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }

    async def exchange():
        communicator = ApplicationCommunicator(application, scope)
        await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
        start = await communicator.receive_output(10)
        body = b""
        while True:
            message = await communicator.receive_output(10)
            body += message.get("body", b"")
            if not message.get("more_body"):
                return start["status"], json.loads(body)

    return asyncio.run(exchange())


def test_an_api_request_is_answered_through_the_asgi_application(monkeypatch):
    # given a task and its owner's token
    owner = UserFactory()
    token = Token.objects.create(user=owner)
    TaskRecordFactory(task_id="asgi-1", state=TaskState.SUCCESS, submitted_by=owner)
    threads = []
    from tasks_app.api import views

    original = views.TaskViewSet.task_status

    @functools.wraps(original)  # keeps the action's routing attributes
    def task_status(self, request, task_id):
        threads.append(threading.get_ident())
        return original(self, request, task_id)

    monkeypatch.setattr(views.TaskViewSet, "task_status", task_status)

    # when it asks for the task through the ASGI application
    status, body = asgi_get("/api/v1/tasks/status/asgi-1", {"Authorization": f"Token {token.key}"})

    # then the answer is the task's, from a thread that is not the event loop's
    assert status == 200, body
    assert body["task_id"] == "asgi-1"
    assert body["status"] == "SUCCESS"
    assert threads
    assert threads[0] != threading.get_ident()
