"""Live replies end to end: a real worker streams from a slow loopback provider into Redis, and
uvicorn serves GET /api/v1/tasks/stream/{id} to a real HTTP client."""

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from conversations.models import Message
from conversations.reply_streams import stream_key
from conversations.services import AI_GENERATION_TASK
from tasks_app.models import TaskRecord, TaskState
from tasks_app.services import submit_task
from tests.conversations.conftest import STREAM_TEST_QUEUE
from tests.support.fake_llm import streamed
from tests.support.sse import EventStream, reply_text
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

PIECES = [f"word{number} " for number in range(20)]
REPLY = "".join(PIECES)


def send_reply(
    user, conversation_id: str = "conv_live", message: str = "Tell me a story", queue: str = STREAM_TEST_QUEUE
) -> TaskRecord:
    """An AI reply for `user`, as /ai/generate submits it, to the streaming test worker's queue."""
    return submit_task(
        task_name=AI_GENERATION_TASK,
        kwargs={
            "conversation_id": conversation_id,
            "user_message": message,
            "temperature": 0.7,
            "user_id": "user_456",
            "tenant_id": user.pk,
        },
        queue=queue,
        submitted_by=user,
    )


def stream_path(task_id: str) -> str:
    return f"/api/v1/tasks/stream/{task_id}"


def finished(task_id: str) -> TaskRecord:
    return wait_for(
        lambda: TaskRecord.objects.filter(task_id=task_id, state__in=[TaskState.SUCCESS, TaskState.FAILURE]).first(),
        timeout=30,
        what=f"task {task_id} to finish",
    )


@pytest.fixture
def token(alice) -> str:
    return Token.objects.create(user=alice).key


def test_deltas_arrive_while_the_reply_is_written_and_add_up_to_the_saved_reply(
    stream_worker, web_server, fake_llm, alice, token
):
    # given a provider that writes a reply of 20 pieces, 0.1 s apart
    fake_llm.script(streamed(PIECES, every=0.1, prompt_tokens=30, completion_tokens=20))

    # when a client opens the stream before the task has started
    task = send_reply(alice)
    stream = EventStream(web_server.port, stream_path(task.task_id), token=token)
    assert stream.status == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["cache-control"] == "no-cache"
    first = stream.next_event()

    # then the first event is a status
    assert first.event == "status"
    assert first.data["status"] in ("PENDING", "STARTED")

    # and the first delta arrives while the task is still running
    events = [first, *stream.events_until(lambda event: event.event == "delta")]
    assert TaskRecord.objects.get(task_id=task.task_id).state == TaskState.STARTED
    # and meanwhile /status shows the text so far
    api = APIClient()
    api.force_authenticate(alice)
    partial = api.get(f"/api/v1/tasks/status/{task.task_id}").json()["partial"]
    assert partial is not None
    assert REPLY.startswith(partial)

    # and the stream ends with `done`, carrying the /status document of the finished task
    events += stream.events_until(lambda event: event.event in ("done", "error", "cancelled"))
    assert stream.next_event() is None  # the server closed the stream
    done = events[-1]
    assert done.event == "done"
    assert done.data["status"] == "SUCCESS"
    assert done.data["result"]["response"] == REPLY
    assert done.data["result"]["tokens"] == {"prompt": 30, "completion": 20, "total": 50}

    # and the deltas, in order and coalesced, add up to the saved reply
    assert reply_text(events) == REPLY
    deltas = [event for event in events if event.event == "delta"]
    assert 1 < len(deltas) <= len(PIECES)
    ids = [event.id for event in events]
    assert ids == sorted(ids, key=lambda value: tuple(int(part) for part in value.split("-")))
    assert len(set(ids)) == len(ids)
    # and the saved message records how the reply was written
    reply = Message.objects.get(task_id=task.task_id, role="assistant")
    assert reply.content == REPLY
    assert reply.finish_reason == "stop"
    assert reply.tokens_estimated is False
    assert reply.time_to_first_token_ms is not None
    assert reply.tokens_per_second > 0
    stream.close()


def test_a_client_that_reconnects_sees_every_piece_exactly_once(stream_worker, web_server, fake_llm, alice, token):
    # given a reply being written
    fake_llm.script(streamed(PIECES, every=0.1))
    task = send_reply(alice, conversation_id="conv_reconnect")
    path = stream_path(task.task_id)

    # when the client reads two deltas and drops the connection
    first = EventStream(web_server.port, path, token=token)
    seen = first.events_until(lambda event: event.event == "delta")
    seen += first.events_until(lambda event: event.event == "delta")
    first.close()

    # and reconnects with Last-Event-ID, reads one more delta, drops again
    second = EventStream(web_server.port, path, token=token, last_event_id=seen[-1].id)
    seen += second.events_until(lambda event: event.event == "delta")
    second.close()

    # and reconnects once more, this time naming the id in the query string
    third = EventStream(web_server.port, f"{path}?last_event_id={seen[-1].id}", token=token)
    seen += third.read_all()

    # then it saw every event exactly once, in order, and the reply whole
    ids = [event.id for event in seen]
    assert len(set(ids)) == len(ids)
    assert seen[-1].event == "done"
    assert reply_text(seen) == REPLY == Message.objects.get(task_id=task.task_id, role="assistant").content

    # and a client that comes back after `done` is told there is nothing more (204: no reconnecting)
    after_done = EventStream(web_server.port, path, token=token, last_event_id=seen[-1].id)
    assert after_done.status == 204


def test_a_late_client_gets_the_whole_reply_and_done_at_once(stream_worker, web_server, fake_llm, alice, token):
    # given a reply that was written before anyone watched
    fake_llm.script(streamed(PIECES, every=0.01))
    task = send_reply(alice, conversation_id="conv_late")
    finished(task.task_id)

    # when a client connects
    events = EventStream(web_server.port, stream_path(task.task_id), token=token).read_all()

    # then it replays everything and gets `done`
    assert reply_text(events) == REPLY
    assert events[0].event == "status"
    assert events[-1].event == "done"
    assert events[-1].data["result"]["response"] == REPLY


def test_a_retry_after_text_was_shown_starts_the_reply_again_with_a_reset(
    stream_worker, web_server, fake_llm, alice, token
):
    # given a provider that breaks off after three pieces, then answers in full
    fake_llm.script(streamed(PIECES, every=0.05, cut_after=3), streamed(PIECES, every=0.01))

    # when a client watches the reply
    task = send_reply(alice, conversation_id="conv_retry")
    events = EventStream(web_server.port, stream_path(task.task_id), token=token).read_all()

    # then the first attempt's text is followed by RETRY, a reset, and the second attempt's text
    names = [event.event for event in events]
    assert names[-1] == "done"
    assert {"event": "status", "status": "RETRY"} in [
        {"event": event.event, **event.data} for event in events if event.event == "status"
    ]
    reset_at = names.index("reset")
    assert reply_text(events[:reset_at]) == "".join(PIECES[:3])
    # and the words after the reset are the saved reply, each once
    assert reply_text(events) == REPLY == Message.objects.get(task_id=task.task_id, role="assistant").content


def test_the_offline_provider_streams_word_by_word(web_server, alice, token, start_worker):
    # given a worker of the offline provider that pauses 20 ms between words
    start_worker(queues=["test_offline_stream"], pool="threads", env={"LLM_OFFLINE_STREAM_DELAY_MS": "20"})

    # when a client watches its reply
    task = send_reply(alice, conversation_id="conv_offline", message="hello there", queue="test_offline_stream")
    events = EventStream(web_server.port, stream_path(task.task_id), token=token).read_all()

    # then several deltas spell the saved reply, marked as estimated tokens
    assert len([event for event in events if event.event == "delta"]) > 3
    reply = Message.objects.get(task_id=task.task_id, role="assistant")
    assert reply_text(events) == reply.content
    assert "hello there" in reply.content
    assert events[-1].event == "done"
    assert events[-1].data["result"]["tokens_estimated"] is True


def test_after_the_stream_expired_the_reply_comes_from_the_saved_message(
    stream_worker, web_server, fake_llm, alice, token, redis_client
):
    # given a finished reply whose stream has expired
    fake_llm.script(streamed(PIECES, every=0.01))
    task = send_reply(alice, conversation_id="conv_expired")
    finished(task.task_id)
    events = EventStream(web_server.port, stream_path(task.task_id), token=token).read_all()
    redis_client.delete(stream_key(task.task_id))

    # when a new client connects, and one that had read the stream up to a delta comes back
    late = EventStream(web_server.port, stream_path(task.task_id), token=token).read_all()
    last_delta = [event for event in events if event.event == "delta"][-1]
    back = EventStream(web_server.port, stream_path(task.task_id), token=token, last_event_id=last_delta.id).read_all()

    # then the new one gets the whole reply and done; the returning one only done
    assert reply_text(late) == REPLY
    assert [event.event for event in late] == ["delta", "done"]
    assert late[-1].data["result"]["response"] == REPLY
    assert [event.event for event in back] == ["done"]
