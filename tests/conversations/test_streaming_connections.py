"""Open streams share Redis connections: however many clients watch, a web process holds a few (issue 14)."""

import json
import uuid
from collections import Counter

import pytest
from rest_framework.authtoken.models import Token

from claw_ai.redis_clients import ASYNC_CLIENT_NAME
from claw_ai.stream_readers import READER_CLIENT_NAME
from conversations.reply_streams import stream_key
from conversations.services import AI_GENERATION_TASK
from tasks_app.models import TaskRecord, TaskState
from tests.support.asgi_server import AsgiServer
from tests.support.sse import EventStream
from tests.support.waiting import wait_for

# The module starts its own web server.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

READERS, COMMAND_CONNECTIONS = 2, 2


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    """The application with two shared stream readers and two connections for short commands."""
    env = {"STREAM_READERS": str(READERS), "STREAM_COMMAND_CONNECTIONS": str(COMMAND_CONNECTIONS)}
    with django_db_blocker.unblock():
        server = AsgiServer(env=env).wait_ready()
    yield server
    server.stop()


@pytest.fixture
def token(alice) -> str:
    return Token.objects.create(user=alice).key


def queued_reply(user) -> TaskRecord:
    return TaskRecord.objects.create(
        task_id=str(uuid.uuid4()),
        task_name=AI_GENERATION_TASK,
        queue="ai_high_priority",
        state=TaskState.PENDING,
        submitted_by=user,
    )


def stream_connections(redis_client) -> Counter:
    """The web server's stream connections to the test's Redis database, by client name."""
    db = redis_client.connection_pool.connection_kwargs.get("db", 0)
    names = (READER_CLIENT_NAME, ASYNC_CLIENT_NAME)
    return Counter(
        client["name"] for client in redis_client.client_list() if client["name"] in names and int(client["db"]) == db
    )


def write(redis_client, task: TaskRecord, text: str) -> str:
    """A delta on the task's stream, as a worker writes it; its entry id."""
    fields = {"event": "delta", "data": json.dumps({"text": text})}
    return redis_client.xadd(stream_key(task.task_id), fields).decode()


def watch(server, task: TaskRecord, token: str, **options) -> EventStream:
    return EventStream(server.port, f"/api/v1/tasks/stream/{task.task_id}", token=token, **options)


def test_twenty_open_streams_hold_two_reader_connections_and_each_gets_its_own_events(
    server, alice, token, redis_client
):
    # given twenty queued replies, each watched by a client
    tasks = [queued_reply(alice) for _ in range(20)]
    streams = [watch(server, task, token) for task in tasks]
    for stream in streams:
        assert stream.next_event().data == {"status": "PENDING"}

    # then the server waits for all of them on two connections (and has at most two others)
    wait_for(
        lambda: stream_connections(redis_client)[READER_CLIENT_NAME] == READERS,
        timeout=10,
        what="the two shared readers",
    )
    assert stream_connections(redis_client)[ASYNC_CLIENT_NAME] <= COMMAND_CONNECTIONS

    # when each reply's worker writes a piece
    for task in tasks:
        write(redis_client, task, f"for {task.task_id}")

    # then each client gets its own reply's piece, and nothing else
    for stream, task in zip(streams, tasks, strict=True):
        event = stream.next_event()
        assert (event.event, event.data) == ("delta", {"text": f"for {task.task_id}"})
    assert stream_connections(redis_client)[READER_CLIENT_NAME] == READERS

    # when the clients go away, then the readers end and close their connections
    for stream in streams:
        stream.close()
    wait_for(
        lambda: stream_connections(redis_client)[READER_CLIENT_NAME] == 0,
        timeout=10,
        what="the readers to close",
    )


def test_clients_at_different_places_of_one_stream_share_a_reader_and_resume_with_no_gap_or_repeat(
    server, alice, token, redis_client
):
    # given a reply that wrote two pieces
    task = queued_reply(alice)
    first, second = write(redis_client, task, "one "), write(redis_client, task, "two ")

    # when three clients watch it, two of them resuming (more clients than readers: they share)
    from_start = watch(server, task, token)
    after_first = watch(server, task, token, last_event_id=first)
    after_second = watch(server, task, token, last_event_id=second)
    assert [from_start.next_event().data["text"] for _ in range(2)] == ["one ", "two "]
    assert after_first.next_event().data["text"] == "two "
    wait_for(
        lambda: stream_connections(redis_client)[READER_CLIENT_NAME] == READERS,
        timeout=10,
        what="the readers",
    )
    third = write(redis_client, task, "three")

    # then each gets the third piece once, right after what it had
    for stream in (from_start, after_first, after_second):
        event = stream.next_event()
        assert (event.id, event.data) == (third, {"text": "three"})
        stream.close()
