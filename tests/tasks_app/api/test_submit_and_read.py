"""POST /ai/generate, GET /status, /list and /stats, through HTTP with a real worker."""

import base64
from datetime import timedelta

import pytest
from django.utils import timezone

from tasks_app.models import TaskRecord
from tasks_app.tasks.ai_tasks import generate_ai_response
from tests.support.waiting import wait_for
from tests.tasks_app.api.conftest import API, GENERATE

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def wait_status(client, task_id: str, status: str) -> dict:
    def reached():
        body = client.get(f"{API}/status/{task_id}").json()
        return body if body["status"] == status else None

    return wait_for(reached, timeout=30, what=f"{task_id} to be {status}")


def test_generate_runs_and_status_shows_the_result(celery_worker, alice_client):
    # when a user submits an AI generation at the seed's URL (no trailing slash)
    response = alice_client.post(f"{API}/ai/generate", {**GENERATE, "priority": 8}, format="json")

    # then it is accepted as PENDING with the English message, and the worker produces the reply
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "PENDING"
    assert body["message"] == "AI response generation task submitted"
    done = wait_status(alice_client, body["task_id"], "SUCCESS")
    assert done["result"]["conversation_id"] == "conv_123"
    assert done["queue"] == "ai_high_priority"
    assert done["priority"] == 8
    assert done["runtime"] is not None
    assert done["date_done"]
    assert done["kwargs"]["user_message"] == "你好"


def test_generate_message_is_translated_for_chinese(celery_worker, alice_client):
    response = alice_client.post(f"{API}/ai/generate/", GENERATE, format="json", HTTP_ACCEPT_LANGUAGE="zh-CN")

    assert response.status_code == 202
    assert response.json()["message"] == "AI 响应生成任务已提交"
    # (let the worker finish: a task still writing while the test database is flushed can deadlock it)
    wait_status(alice_client, response.json()["task_id"], "SUCCESS")


def test_generate_passes_callback_url_and_delay(alice_client):
    # given no worker at all (the task only needs to be recorded)
    eta = (timezone.now() + timedelta(hours=1)).isoformat()
    payload = {**GENERATE, "callback_url": "https://example.com/hook", "eta": eta}

    response = alice_client.post(f"{API}/ai/generate", payload, format="json")

    assert response.status_code == 202
    record = TaskRecord.objects.get(task_id=response.json()["task_id"])
    assert record.kwargs["callback_url"] == "https://example.com/hook"
    assert record.eta is not None
    status = alice_client.get(f"{API}/status/{record.task_id}").json()
    assert status["pending_reason"].startswith("Scheduled")


@pytest.mark.parametrize(
    "change",
    [
        {"user_message": ""},
        {"user_message": "   "},
        {"user_message": "x" * 10_001},
        {"temperature": 2.5},
        {"temperature": -0.1},
        {"temperature": "nan"},
        {"priority": 10},
        {"priority": -1},
        {"countdown": 10, "eta": "2030-01-01T00:00:00Z"},
        {"countdown": 10**9},
        {"eta": "not a date"},
        {"eta": "9999-12-31T23:59:59-12:00"},
        {"user_message": "a\x00b"},
        {"priority": 5.5},
        {"callback_url": "ftp://example.com/x"},
        {"callback_url": "javascript:alert(1)"},
        {"conversation_id": None},
        {"user_id": ""},
    ],
)
def test_generate_rejects_bad_input_with_field_errors(alice_client, change):
    response = alice_client.post(f"{API}/ai/generate", {**GENERATE, **change}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["message"]
    assert body["errors"]
    assert not TaskRecord.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        "[1, 2]",
        '{"conversation_id": "c", "user_message": "m", "user_id": "u", "temperature": 1e309}',
        '{"conversation_id": "c", "user_message": "m", "user_id": "u", "countdown": 1e309}',
    ],
)
def test_generate_rejects_malformed_bodies(alice_client, body):
    response = alice_client.post(f"{API}/ai/generate", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["message"]


def test_generate_when_broker_is_down_answers_503_and_keeps_no_record(alice_client, broker_down):
    response = alice_client.post(f"{API}/ai/generate", GENERATE, format="json")

    assert response.status_code == 503
    assert "broker" in response.json()["message"]
    assert not TaskRecord.objects.exists()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/status/abc"),
        ("get", "/list"),
        ("get", "/stats"),
        ("post", "/ai/generate"),
        ("post", "/cancel/abc"),
        ("post", "/retry/abc"),
        ("get", "/workers"),
        ("post", "/workers/pool/restart"),
        ("post", "/workers/shutdown"),
    ],
)
def test_every_endpoint_needs_authentication(anonymous_client, method, path):
    response = getattr(anonymous_client, method)(f"{API}{path}")

    assert response.status_code == 401
    assert response.json()["message"]


@pytest.mark.parametrize("task_id", ["no-such-task", "x" * 300, "%00", "..", "a.b.c", "' OR 1=1 --"])
def test_status_of_an_unknown_or_garbage_id_is_404(alice_client, task_id):
    response = alice_client.get(f"{API}/status/{task_id}")

    assert response.status_code == 404
    assert response.json()["message"]


def test_a_task_sent_from_python_is_listed_for_staff_only(celery_worker, staff_client, alice_client):
    # given a task sent from code, not through the API
    sent = generate_ai_response.apply_async(kwargs={"conversation_id": "conv_py", "user_message": "hi"})

    # then staff see it in the list (by conversation) and its status; a user does not
    listed = staff_client.get(f"{API}/list", {"conversation_id": "conv_py"}).json()["results"]
    assert [task["task_id"] for task in listed] == [sent.id]
    assert wait_status(staff_client, sent.id, "SUCCESS")["task_name"].endswith("generate_ai_response")
    assert alice_client.get(f"{API}/list").json()["results"] == []
    assert alice_client.get(f"{API}/status/{sent.id}").status_code == 404


def test_users_see_only_their_own_tasks(alice_client, bob_client, staff_client):
    # given one task of alice's and one of bob's (no worker needed)
    # (delayed, so a live session worker does not run them while the test database is flushed;
    # a conversation belongs to the API user who created it: bob uses his own)
    later = {**GENERATE, "countdown": 3600}
    mine = alice_client.post(f"{API}/ai/generate", later, format="json").json()["task_id"]
    theirs = bob_client.post(f"{API}/ai/generate", {**later, "conversation_id": "conv_bob"}, format="json")
    theirs = theirs.json()["task_id"]

    # then each sees, cancels and retries only their own; staff see both
    assert [t["task_id"] for t in alice_client.get(f"{API}/list").json()["results"]] == [mine]
    assert alice_client.get(f"{API}/status/{theirs}").status_code == 404
    assert alice_client.post(f"{API}/cancel/{theirs}").status_code == 404
    assert alice_client.post(f"{API}/retry/{theirs}").status_code == 404
    assert alice_client.get(f"{API}/stats").json()["total_tasks"] == 1
    assert {t["task_id"] for t in staff_client.get(f"{API}/list").json()["results"]} == {mine, theirs}


def test_list_filters_and_cursor_pagination(alice_client):
    # given five tasks in two conversations
    ids = []
    for n in range(5):
        payload = {**GENERATE, "conversation_id": f"conv_{n % 2}", "countdown": 3600}
        ids.append(alice_client.post(f"{API}/ai/generate", payload, format="json").json()["task_id"])

    # when paging two at a time
    first = alice_client.get(f"{API}/list", {"limit": 2}).json()
    second = alice_client.get(first["next"]).json()
    third = alice_client.get(second["next"]).json()

    # then pages are newest first, complete and without overlap
    pages = [first, second, third]
    assert [t["task_id"] for page in pages for t in page["results"]] == ids[::-1]
    assert first["previous"] is None
    assert third["next"] is None
    assert [t["task_id"] for t in alice_client.get(second["previous"]).json()["results"]] == ids[::-1][:2]
    # and filters narrow the list
    by_conversation = alice_client.get(f"{API}/list", {"conversation_id": "conv_0"}).json()["results"]
    assert len(by_conversation) == 3
    assert alice_client.get(f"{API}/list", {"status": "SUCCESS"}).json()["results"] == []
    pending = alice_client.get(f"{API}/list", {"status": "PENDING", "queue": "ai_high_priority"}).json()
    assert len(pending["results"]) == 5
    later = (timezone.now() + timedelta(minutes=1)).isoformat()
    assert alice_client.get(f"{API}/list", {"created_after": later}).json()["results"] == []
    assert len(alice_client.get(f"{API}/list", {"created_before": later, "limit": 10**12}).json()["results"]) == 5


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "abc"},
        {"limit": 0},
        {"status": "DONE"},
        {"queue": "a\x00b"},
        {"created_after": "yesterday"},
        {"created_after": "9999-12-31T23:59:59-12:00"},
        {"cursor": "garbage"},
        {"cursor": base64.b64encode(b"p=notadate").decode()},
    ],
)
def test_list_rejects_bad_queries(alice_client, query):
    response = alice_client.get(f"{API}/list", query)

    assert response.status_code == 400
    assert response.json()["errors"]


def test_pending_reason_names_a_queue_no_worker_consumes(staff_client, settings):
    # given a task waiting on a queue no worker consumes
    settings.TASK_PENDING_EXPLAIN_AFTER = 0
    sent = generate_ai_response.apply_async(kwargs={"conversation_id": "c", "user_message": "m"}, queue="nobody_here")

    # (before the first worker discovery, which runs in the background, no reason is claimed)
    def explained():
        status = staff_client.get(f"{API}/status/{sent.id}").json()
        return status if status["pending_reason"] else None

    status = wait_for(explained, timeout=10, what="a pending reason")

    assert status["status"] == "PENDING"
    assert "nobody_here" in status["pending_reason"]


@pytest.mark.parametrize("path", ["/ai/generate", "/cancel/abc", "/workers/shutdown", "/workers/pool/restart"])
def test_browsable_api_offers_forms_for_posts(client, staff, path):
    # given a staff session (the browsable API and admin use sessions)
    client.force_login(staff)

    # when a POST endpoint is opened in a browser
    response = client.get(f"{API}{path}", HTTP_ACCEPT="text/html")

    # then the page renders a form to post with
    assert response.status_code == 405
    assert b"<form" in response.content
    assert b'method="POST"' in response.content


def test_schema_and_docs_are_served_to_a_logged_in_user(admin_client):
    assert admin_client.get("/api/schema/").status_code == 200
    assert admin_client.get("/api/docs/").status_code == 200
