"""GET /api/v1/tasks/stream/{id} refuses, in the API's JSON error shape, before any stream starts."""

import http.client
import json
import uuid

import psutil
import pytest
from rest_framework.authtoken.models import Token

from conversations.services import AI_GENERATION_TASK
from tasks_app.models import TaskRecord, TaskState
from tests.support.asgi_server import AsgiServer, free_port
from tests.support.schema import client_for, operation_for
from tests.support.sse import EventStream
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True)]


def task_of(user, *, task_name: str = AI_GENERATION_TASK, state: str = TaskState.STARTED) -> TaskRecord:
    return TaskRecord.objects.create(
        task_id=str(uuid.uuid4()), task_name=task_name, queue="ai_high_priority", state=state, submitted_by=user
    )


@pytest.fixture
def token(alice) -> str:
    return Token.objects.create(user=alice).key


@pytest.fixture(scope="module")
def server_without_redis(django_db_setup, django_db_blocker):
    """The application with REDIS_URL naming a port nobody listens on."""
    with django_db_blocker.unblock():
        server = AsgiServer(env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}).wait_ready()
    yield server
    server.stop()


def get(port: int, path: str, **options) -> EventStream:
    return EventStream(port, path, **options)


def test_an_unknown_or_another_tenants_task_is_404(web_server, alice, bob, token):
    # given bob's AI reply
    bobs = task_of(bob)

    for task_id in (str(uuid.uuid4()), bobs.task_id, "x" * 300):
        # when alice asks for its stream, or for a task nobody sent
        answer = get(web_server.port, f"/api/v1/tasks/stream/{task_id}", token=token)

        # then both are 404 JSON, telling her nothing about bob's task
        assert answer.status == 404
        assert answer.headers["content-type"] == "application/json"
        assert answer.body["code"] == "not_found"


def test_a_task_that_is_not_an_ai_reply_is_400(web_server, alice, token):
    task = task_of(alice, task_name="tasks_app.tasks.notification_tasks.send_notification")

    answer = get(web_server.port, f"/api/v1/tasks/stream/{task.task_id}", token=token)

    assert answer.status == 400
    assert answer.body["code"] == "not_streamable"
    assert "/status" in answer.body["message"]


@pytest.mark.parametrize("last_event_id", ["abc", "1-2-3", "-1", "1700000000000", "1-"])
def test_a_malformed_last_event_id_is_400(web_server, alice, token, last_event_id):
    task = task_of(alice)

    in_header = get(web_server.port, f"/api/v1/tasks/stream/{task.task_id}", token=token, last_event_id=last_event_id)
    in_query = get(web_server.port, f"/api/v1/tasks/stream/{task.task_id}?last_event_id={last_event_id}", token=token)

    for answer in (in_header, in_query):
        assert answer.status == 400
        assert answer.body["code"] == "invalid_last_event_id"


def test_without_credentials_it_is_401(web_server, alice):
    task = task_of(alice)

    anonymous = get(web_server.port, f"/api/v1/tasks/stream/{task.task_id}")
    bad_token = get(web_server.port, f"/api/v1/tasks/stream/{task.task_id}", token="nope")

    assert anonymous.status == bad_token.status == 401
    assert anonymous.body["code"] == "not_authenticated"
    assert bad_token.body["code"] == "authentication_failed"


def test_redis_unreachable_is_503_json(server_without_redis, alice, token):
    task = task_of(alice)

    answer = get(server_without_redis.port, f"/api/v1/tasks/stream/{task.task_id}", token=token)

    assert answer.status == 503
    assert answer.body["code"] == "service_unavailable"
    assert "Redis" in answer.body["message"]


def test_a_task_cancelled_before_it_started_ends_its_stream_with_cancelled(web_server, alice, token):
    # given a queued reply that no worker takes
    task = task_of(alice, state=TaskState.PENDING)

    # when a client watches it and the task is cancelled meanwhile (nothing writes its stream)
    stream = get(web_server.port, f"/api/v1/tasks/stream/{task.task_id}", token=token)
    first = stream.next_event()
    TaskRecord.objects.filter(pk=task.pk).update(state=TaskState.REVOKED)
    rest = stream.read_all()

    # then the stream said PENDING, then ended with `cancelled` and no text
    assert (first.event, first.data) == ("status", {"status": "PENDING"})
    assert [(event.event, event.data) for event in rest] == [("cancelled", {"task_id": task.task_id, "partial": ""})]


def blocked_stream_readers(redis_client) -> int:
    """Connections of the test Redis database waiting in XREAD (one per open stream)."""
    db = redis_client.connection_pool.connection_kwargs.get("db", 0)
    return sum(1 for client in redis_client.client_list() if client["cmd"] == "xread" and int(client["db"]) == db)


def test_a_client_that_goes_away_costs_nothing_after_it_left(web_server, alice, token, redis_client):
    # given two clients watching a queued reply: each is one waiting read in Redis, no thread
    task = task_of(alice, state=TaskState.PENDING)
    before = blocked_stream_readers(redis_client)
    streams = [get(web_server.port, f"/api/v1/tasks/stream/{task.task_id}", token=token) for _ in range(2)]
    for stream in streams:
        assert stream.next_event().event == "status"
    wait_for(lambda: blocked_stream_readers(redis_client) == before + 2, timeout=10, what="two waiting reads")

    # when the clients go away
    for stream in streams:
        stream.close()

    # then the server stops reading for them
    wait_for(lambda: blocked_stream_readers(redis_client) == before, timeout=10, what="the reads to end")


@pytest.fixture(scope="module")
def server_with_quick_keepalive(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        server = AsgiServer(env={"STREAM_KEEPALIVE_SECONDS": "0.3"}).wait_ready()
    yield server
    server.stop()


def test_an_idle_stream_gets_keep_alive_comments(server_with_quick_keepalive, alice, token):
    # given a client watching a reply that waits in its queue
    task = task_of(alice, state=TaskState.PENDING)
    stream = get(server_with_quick_keepalive.port, f"/api/v1/tasks/stream/{task.task_id}", token=token)
    assert stream.next_event().data == {"status": "PENDING"}

    # when nothing happens for a while, then comment lines keep the connection alive
    TaskRecord.objects.filter(pk=task.pk).update(state=TaskState.REVOKED)  # ends the stream after a few
    rest = stream.read_all()
    assert stream.comments
    assert set(stream.comments) == {": keep-alive"}
    assert [event.event for event in rest] == ["cancelled"]


def test_the_rest_of_the_api_works_under_the_same_asgi_server(web_server, alice, token):
    # given the DRF endpoints served by uvicorn (sync views, run in a thread per request)
    connection = http.client.HTTPConnection("127.0.0.1", web_server.port, timeout=30)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}

    # when a reply is submitted and its status read, as a chat backend does
    body = json.dumps({"conversation_id": "conv_asgi", "user_message": "hi", "user_id": "user_456"})
    connection.request("POST", "/api/v1/tasks/ai/generate", body=body, headers=headers)
    submitted = connection.getresponse()
    accepted = json.loads(submitted.read())
    connection.request("GET", f"/api/v1/tasks/status/{accepted['task_id']}", headers=headers)
    status = connection.getresponse()
    document = json.loads(status.read())
    connection.request("GET", "/api/v1/tasks/status/nope", headers=headers)
    missing = connection.getresponse()
    missing_body = json.loads(missing.read())

    # then they answer as they do under WSGI
    assert submitted.status == 202, accepted
    assert accepted["status"] == "PENDING"
    assert status.status == 200
    assert document["task_id"] == accepted["task_id"]
    assert "partial" in document
    assert (missing.status, missing_body["code"]) == (404, "not_found")


def test_open_streams_hold_no_thread(web_server, alice, token):
    # given the server after one stream was served (its pools are warm)
    task = task_of(alice, state=TaskState.PENDING)
    path = f"/api/v1/tasks/stream/{task.task_id}"
    warm = get(web_server.port, path, token=token)
    warm.next_event()
    warm.close()
    server = psutil.Process(web_server.process.pid)
    before = server.num_threads()

    # when twenty clients watch a reply that waits in its queue
    streams = [get(web_server.port, path, token=token) for _ in range(20)]
    for stream in streams:
        assert stream.next_event().data == {"status": "PENDING"}

    # then the server runs no more threads than a handful (its shared pools), not one per stream,
    # and holds no database connection for them
    assert server.num_threads() - before < 5
    database_connections = [c for c in server.net_connections(kind="tcp") if c.raddr and c.raddr.port == 5432]
    assert len(database_connections) < 5
    for stream in streams:
        stream.close()


def test_a_signed_in_browser_session_may_watch_its_own_reply(web_server, alice, bob):
    # given alice signed in (an EventSource sends the session cookie, no token)
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session[SESSION_KEY] = str(alice.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = alice.get_session_auth_hash()
    session.save()
    cookie = f"{settings.SESSION_COOKIE_NAME}={session.session_key}"

    # when she opens the stream of her reply, and of bob's
    own = get(web_server.port, f"/api/v1/tasks/stream/{task_of(alice, state=TaskState.PENDING).task_id}", cookie=cookie)
    foreign = get(web_server.port, f"/api/v1/tasks/stream/{task_of(bob).task_id}", cookie=cookie)

    # then hers streams and bob's is unknown to her
    assert own.status == 200
    assert own.next_event().data == {"status": "PENDING"}
    own.close()
    assert foreign.status == 404


def test_the_stream_is_in_the_api_schema_and_its_refusals_match_it(alice):
    # given the OpenAPI schema the API serves
    operation = operation_for("/api/v1/tasks/stream/some-id", "get")

    # then the stream is documented as an event stream, its resumption too
    assert "text/event-stream" in operation["responses"]["200"]["content"]
    resumption = {("header", "Last-Event-ID"), ("query", "last_event_id")}
    assert resumption <= {(parameter["in"], parameter["name"]) for parameter in operation["parameters"]}
    # and each refusal answers as the schema says (the client checks every JSON answer against it)
    client = client_for(alice)
    assert client.get(f"/api/v1/tasks/stream/{uuid.uuid4()}").status_code == 404
    notification = task_of(alice, task_name="tasks_app.tasks.notification_tasks.send_notification")
    assert client.get(f"/api/v1/tasks/stream/{notification.task_id}").status_code == 400
    reply = task_of(alice)
    assert client.get(f"/api/v1/tasks/stream/{reply.task_id}", HTTP_LAST_EVENT_ID="not-an-id").status_code == 400
    client.credentials()
    assert client.get(f"/api/v1/tasks/stream/{reply.task_id}").status_code == 401
