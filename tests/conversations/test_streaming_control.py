"""Stopping a live reply: cancel mid-stream, and a new message that supersedes the reply being written."""

import time
import uuid

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from conversations.models import Message
from conversations.services import AI_GENERATION_TASK
from tasks_app.models import TaskRecord, TaskState
from tests.conversations.test_streaming import send_reply, stream_path
from tests.support.fake_llm import streamed
from tests.support.sse import EventStream, reply_text
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

# A long reply, 0.1 s a piece: still being written whenever the test acts.
LONG = [f"piece{number} " for number in range(100)]
FINAL_EVENTS = ("done", "error", "cancelled")


@pytest.fixture
def token(alice) -> str:
    return Token.objects.create(user=alice).key


@pytest.fixture
def api(alice) -> APIClient:
    client = APIClient()
    client.force_authenticate(alice)
    return client


def test_cancel_mid_stream_closes_the_provider_connection_and_keeps_the_partial_reply(
    stream_worker, web_server, fake_llm, alice, token, api
):
    # given a reply being written, watched by a client that has seen some of it
    fake_llm.script(streamed(LONG, every=0.1))
    closed_before = len(fake_llm.closed_by_client)
    task = send_reply(alice, conversation_id="conv_cancel")
    stream = EventStream(web_server.port, stream_path(task.task_id), token=token)
    events = stream.events_until(lambda event: event.event == "delta")

    # when the task is cancelled through the API
    response = api.post(f"/api/v1/tasks/cancel/{task.task_id}")
    cancelled_at = time.monotonic()
    assert response.status_code == 200, response.content

    # then the provider sees its connection closed within a second (it stops billing)
    closed_at = wait_for(
        lambda: fake_llm.closed_by_client[closed_before:], timeout=10, what="the provider connection to close"
    )[0]
    assert closed_at - cancelled_at < 1.0
    # and the stream ends with `cancelled`, holding exactly the text the client was shown
    events += stream.events_until(lambda event: event.event in FINAL_EVENTS)
    assert stream.next_event() is None
    final = events[-1]
    assert final.event == "cancelled"
    assert final.data["task_id"] == task.task_id
    partial = final.data["partial"]
    assert partial
    assert "".join(LONG).startswith(partial)
    assert partial != "".join(LONG)
    assert reply_text(events) == partial
    # and the partial reply is saved, marked cancelled, with the (estimated) tokens it used
    reply = wait_for(
        lambda: Message.objects.filter(task_id=task.task_id, role="assistant").first(), what="the partial reply"
    )
    assert (reply.content, reply.finish_reason, reply.tokens_estimated) == (partial, "cancelled", True)
    assert reply.prompt_tokens > 0
    assert reply.completion_tokens > 0
    assert TaskRecord.objects.get(task_id=task.task_id).state == TaskState.REVOKED


def test_a_new_message_with_supersede_cancels_the_reply_being_written(
    stream_worker, web_server, fake_llm, alice, token, api
):
    # given a reply being written in a conversation
    fake_llm.script(streamed(LONG, every=0.1))
    earlier = send_reply(alice, conversation_id="conv_supersede")
    stream = EventStream(web_server.port, stream_path(earlier.task_id), token=token)
    stream.events_until(lambda event: event.event == "delta")

    # when the user sends a new message that supersedes it
    response = api.post(
        "/api/v1/tasks/ai/generate",
        {
            "conversation_id": "conv_supersede",
            "user_message": "Stop, another question",
            "user_id": "user_456",
            "supersede": True,
        },
        format="json",
    )

    # then the earlier reply is cancelled and the new one queued
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["superseded"] == [earlier.task_id]
    assert TaskRecord.objects.get(task_id=earlier.task_id).state == TaskState.REVOKED
    assert TaskRecord.objects.filter(task_id=body["task_id"]).exists()
    # and the earlier reply's watchers see it end as cancelled, its partial text kept
    rest = stream.events_until(lambda event: event.event in FINAL_EVENTS)
    assert rest[-1].event == "cancelled"
    reply = wait_for(
        lambda: Message.objects.filter(task_id=earlier.task_id, role="assistant").first(), what="the partial reply"
    )
    assert reply.finish_reason == "cancelled"
    assert reply.content == rest[-1].data["partial"]


def test_supersede_with_no_reply_being_written_just_queues(api, alice):
    # given a finished reply in the conversation (nothing is being written)
    finished = TaskRecord.objects.create(
        task_id=str(uuid.uuid4()),
        task_name=AI_GENERATION_TASK,
        queue="ai_high_priority",
        state=TaskState.SUCCESS,
        conversation_id="conv_idle",
        submitted_by=alice,
    )

    # when a new message supersedes
    response = api.post(
        "/api/v1/tasks/ai/generate",
        {"conversation_id": "conv_idle", "user_message": "hi", "user_id": "user_456", "supersede": True},
        format="json",
    )

    # then nothing was cancelled
    assert response.status_code == 202
    assert response.json()["superseded"] == []
    assert TaskRecord.objects.get(pk=finished.pk).state == TaskState.SUCCESS


def test_supersede_must_be_a_boolean(api):
    response = api.post(
        "/api/v1/tasks/ai/generate",
        {"conversation_id": "conv_x", "user_message": "hi", "user_id": "user_456", "supersede": "maybe"},
        format="json",
    )

    assert response.status_code == 400
    assert "supersede" in response.json()["errors"]


def test_on_a_prefork_worker_a_cancelled_reply_is_kept_and_ends_its_stream(
    web_server, fake_llm, alice, token, api, start_worker
):
    # given a prefork worker (CELERY_WORKER_POOL=prefork), where a cancel could terminate the
    # process running the task, writing a reply
    start_worker(
        queues=["test_llm_prefork_stream"],
        pool="prefork",
        concurrency=1,
        env={"LLM_PROVIDER": "openai", "LLM_BASE_URL": fake_llm.base_url, "LLM_API_KEY": "sk-test"},
    )
    fake_llm.script(streamed(LONG, every=0.1))
    closed_before = len(fake_llm.closed_by_client)
    task = send_reply(alice, conversation_id="conv_prefork", queue="test_llm_prefork_stream")
    stream = EventStream(web_server.port, stream_path(task.task_id), token=token)
    events = stream.events_until(lambda event: event.event == "delta")

    # when it is cancelled mid-reply
    assert api.post(f"/api/v1/tasks/cancel/{task.task_id}").status_code == 200

    # then the reply stops itself as on a threads worker: the provider connection closes, the
    # stream ends with `cancelled`, and the partial reply is saved as it was streamed
    wait_for(lambda: fake_llm.closed_by_client[closed_before:], timeout=10, what="the provider connection to close")
    events += stream.events_until(lambda event: event.event in FINAL_EVENTS)
    assert events[-1].event == "cancelled"
    assert events[-1].data["partial"] == reply_text(events)
    reply = wait_for(
        lambda: Message.objects.filter(task_id=task.task_id, role="assistant").first(), what="the partial reply"
    )
    assert reply.finish_reason == "cancelled"
    assert reply.content == events[-1].data["partial"]
    assert TaskRecord.objects.get(task_id=task.task_id).state == TaskState.REVOKED
