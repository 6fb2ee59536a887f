"""Who may call what: no endpoint answers without credentials, worker control is for staff, a task is its owner's.

The endpoints are enumerated from the URL resolver (everything under /api/), so a new endpoint is
covered the day it is added. `manage.py check --deploy` with production settings and Flower's
basic auth are tested in tests/foundation/test_settings.py and tests/foundation/test_flower.py.
"""

import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from tasks_app.models import TaskRecord, TaskState
from tests.support.schema import client_for

pytestmark = pytest.mark.django_db

# Values for the URL parameters: the seed's task id shape, a conversation id, a document id.
SEED_VALUES = {"task_id": "d2c7a8e4-2f0b-4f6a-9a51-0c3c8f1e7b10", "conversation_id": "conv_123", "pk": "1"}
SEED_TASK_PATHS = {
    ("GET", "/api/v1/tasks/status/{task_id}"),
    ("GET", "/api/v1/tasks/list"),
    ("POST", "/api/v1/tasks/cancel/{task_id}"),
    ("POST", "/api/v1/tasks/retry/{task_id}"),
    ("GET", "/api/v1/tasks/stats"),
    ("POST", "/api/v1/tasks/ai/generate"),
    ("GET", "/api/v1/tasks/workers"),
    ("POST", "/api/v1/tasks/workers/pool/restart"),
    ("POST", "/api/v1/tasks/workers/shutdown"),
}
JSON = "application/json"
HTML_ONLY = {"/api/docs/"}
WORKER_CONTROL = [
    ("GET", "/api/v1/tasks/workers"),
    ("POST", "/api/v1/tasks/workers/pool/restart"),
    ("POST", "/api/v1/tasks/workers/shutdown"),
]


def _walk(patterns, prefix=""):
    for entry in patterns:
        regex = prefix + entry.pattern.regex.pattern.lstrip("^")
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, regex)
        elif isinstance(entry, URLPattern):
            yield regex, entry.callback


def _methods(callback) -> list[str]:
    actions = getattr(callback, "actions", None)  # a viewset: HTTP method -> action
    if actions:
        return sorted(method.upper() for method in actions)
    view = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if view is None:  # a plain function view: the live reply stream, GET only (405 otherwise)
        return ["GET"]
    return sorted(m.upper() for m in view.http_method_names if m not in ("head", "options") and hasattr(view, m))


def api_endpoints() -> list[tuple[str, str]]:
    """(method, path) of every endpoint under /api/, with seed values for the URL parameters."""
    endpoints = []
    for regex, callback in _walk(get_resolver().url_patterns):
        if not regex.startswith("api/") or "(?P<format>" in regex or "<drf_format_suffix" in regex:
            continue
        path = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda group: SEED_VALUES[group.group(1)], regex)
        path = "/" + path.replace("/?$", "").replace("\\Z", "").rstrip("$")
        assert not re.search(r"[\\()\[\]^$?*+]", path), f"cannot make a concrete path of {regex!r}"
        endpoints.extend((method, path) for method in _methods(callback))
    return endpoints


ENDPOINTS = api_endpoints()


def test_the_enumeration_covers_every_endpoint_the_spec_names():
    paths = {(method, path.rstrip("/")) for method, path in ENDPOINTS}
    seed = {(method, path.format(**SEED_VALUES)) for method, path in SEED_TASK_PATHS}
    assert seed <= paths, f"missing: {sorted(seed - paths)}"
    for expected in ("/api/v1/conversations", "/api/v1/knowledge/documents", "/api/schema", "/api/docs"):
        assert ("GET", expected) in paths


@pytest.mark.parametrize(("method", "path"), ENDPOINTS, ids=[f"{m} {p}" for m, p in ENDPOINTS])
def test_every_endpoint_answers_401_in_json_without_credentials(method, path):
    # when a client without credentials calls it
    accept = "text/html" if path in HTML_ONLY else JSON
    response = APIClient().generic(method, path, data="{}", content_type=JSON, HTTP_ACCEPT=accept)

    # then it is refused as unauthenticated and told how to authenticate, in JSON (the docs page is
    # HTML only: a browser gets its 401 as a page)
    assert response.status_code == 401, response.content[:300]
    assert response["WWW-Authenticate"].startswith("Token")
    if path in HTML_ONLY:
        return
    assert response["Content-Type"].startswith(JSON)
    body = response.json()
    assert body.get("message") or body.get("detail")


@pytest.mark.parametrize("path", ["/api/v1/tasks/status/x", "/api/v1/tasks/list", "/api/v1/conversations/"])
def test_a_wrong_token_is_a_401_too(path):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token 0000000000000000000000000000000000000000")
    response = client.get(path)
    assert response.status_code == 401
    assert response["Content-Type"].startswith("application/json")


def test_the_token_of_a_deactivated_user_is_a_401(mallory):
    # given mallory's token
    client = client_for(mallory)
    assert client.get("/api/v1/tasks/list").status_code == 200

    # when her account is deactivated, then the same token is refused
    mallory.is_active = False
    mallory.save(update_fields=["is_active"])
    response = client.get("/api/v1/tasks/list")
    assert response.status_code == 401
    assert response.json()["message"] == "User inactive or deleted."


@pytest.fixture
def mallory(db):
    return get_user_model().objects.create_user("mallory", password="pw")


@pytest.fixture
def victim(db):
    return get_user_model().objects.create_user("victim", password="pw")


@pytest.mark.parametrize(("method", "path"), WORKER_CONTROL, ids=[f"{m} {p}" for m, p in WORKER_CONTROL])
def test_a_non_staff_user_gets_403_on_worker_control(mallory, method, path):
    # given bodies that would be valid for staff
    body = {"all": True} if path.endswith("shutdown") else {}

    # when a normal user calls worker control
    response = client_for(mallory).generic(method, path, data=body, format="json")

    # then it is forbidden (the schema-checking client also checks the JSON body), and nothing was sent
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


@pytest.fixture
def victims_failed_task(victim) -> TaskRecord:
    return TaskRecord.objects.create(
        task_id="victim-task-1",
        task_name="tasks_app.tasks.ai_tasks.generate_ai_response",
        queue="ai_high_priority",
        submitted_by=victim,
        user_id="user_victim",
        conversation_id="conv_victim",
        kwargs={"conversation_id": "conv_victim", "user_message": "secret", "user_id": "user_victim"},
        state=TaskState.FAILURE,
        error="RuntimeError: boom",
    )


@pytest.mark.parametrize(
    ("method", "action"), [("GET", "status"), ("POST", "cancel"), ("POST", "retry")], ids=["status", "cancel", "retry"]
)
def test_another_users_task_is_a_404_and_stays_untouched(mallory, victim, victims_failed_task, method, action):
    # when another user reads, cancels or retries the victim's task
    response = client_for(mallory).generic(method, f"/api/v1/tasks/{action}/{victims_failed_task.task_id}")

    # then it does not exist for them (no hint that it exists), and nothing changed or was queued
    assert response.status_code == 404
    assert "secret" not in response.content.decode()
    victims_failed_task.refresh_from_db()
    assert victims_failed_task.state == TaskState.FAILURE
    assert TaskRecord.objects.count() == 1

    # and its owner does see it (the 404 is about ownership, not a broken record)
    assert client_for(victim).get(f"/api/v1/tasks/status/{victims_failed_task.task_id}").status_code == 200


def test_another_users_task_is_not_listed_or_counted(mallory, victims_failed_task):
    client = client_for(mallory)
    assert client.get("/api/v1/tasks/list").json()["results"] == []
    assert client.get("/api/v1/tasks/stats").json()["failure"] == 0
