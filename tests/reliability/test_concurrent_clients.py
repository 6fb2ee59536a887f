"""50 clients submit AI generations at once over real HTTP for 20 seconds: nothing accepted is lost.

The server is pytest-django's `live_server`: Django's LiveServerThread runs a ThreadedWSGIServer
(one thread per request, each with its own PostgreSQL connection), so the 50 client threads really
are served concurrently, within what one Python process on this machine allows (the GIL: the rate
printed is this machine's, not production's, which runs several gunicorn workers). The session
worker runs the tasks with the offline provider, without the AI rate limit (test settings).
"""

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
import requests
from django.contrib.auth import get_user_model
from django_celery_results.models import TaskResult
from rest_framework.authtoken.models import Token

from conversations.models import Message, MessageRole
from tasks_app.models import TaskRecord, TaskState
from tests.support.schema import operation_for
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

CLIENTS = 50
SUBMIT_SECONDS = 20
GENERATE = "/api/v1/tasks/ai/generate"
# How long the worker may take to finish everything accepted, after the clients stop.
DRAIN_TIMEOUT = 180


@dataclass
class Outcome:
    accepted: list[str] = field(default_factory=list)
    refused: Counter = field(default_factory=Counter)  # status -> count
    undocumented: list[str] = field(default_factory=list)  # what a non-202 answer got wrong
    transport_errors: list[str] = field(default_factory=list)


def submit_until(deadline: float, url: str, token: str, client: int, documented: set[int], outcome: Outcome) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    turn = 0
    while time.monotonic() < deadline:
        turn += 1
        body = {"conversation_id": f"conv_load_{client}", "user_message": f"hi {turn}", "user_id": f"user_{client}"}
        try:
            response = session.post(url, json=body, timeout=30)
        except requests.RequestException as error:
            outcome.transport_errors.append(f"client {client}: {error!r}")
            continue
        if response.status_code == 202:
            outcome.accepted.append(response.json()["task_id"])
            continue
        outcome.refused[response.status_code] += 1
        is_json = response.headers.get("Content-Type", "").startswith("application/json")
        if response.status_code not in documented or not is_json or "message" not in response.json():
            outcome.undocumented.append(f"{response.status_code} {response.text[:200]}")


def test_fifty_clients_for_twenty_seconds_lose_nothing(celery_worker, live_server, capsys):
    # given 50 API users, each with its own token and conversation
    tokens = [
        Token.objects.create(user=get_user_model().objects.create_user(f"load-{n}", password="pw")).key
        for n in range(CLIENTS)
    ]
    documented = {int(code) for code in operation_for(GENERATE, "post")["responses"]} - {202}
    outcomes = [Outcome() for _ in tokens]  # one per client thread, merged after

    # when they all submit as fast as they can for SUBMIT_SECONDS
    started = time.monotonic()
    deadline = started + SUBMIT_SECONDS
    threads = [
        threading.Thread(
            target=submit_until,
            args=(deadline, live_server.url + GENERATE, token, n, documented, outcomes[n]),
            daemon=True,
        )
        for n, token in enumerate(tokens)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SUBMIT_SECONDS + 60)
    submitting = time.monotonic() - started
    assert not any(thread.is_alive() for thread in threads), "a client hung"
    outcome = Outcome()
    for one in outcomes:
        outcome.accepted += one.accepted
        outcome.refused.update(one.refused)
        outcome.undocumented += one.undocumented
        outcome.transport_errors += one.transport_errors

    accepted = set(outcome.accepted)
    answers = len(outcome.accepted) + sum(outcome.refused.values())
    with capsys.disabled():
        print(
            f"\n{CLIENTS} clients, {submitting:.1f}s: {answers} answers ({answers / submitting:.1f}/s), "
            f"202: {len(outcome.accepted)} ({len(outcome.accepted) / submitting:.1f}/s), "
            f"others: {dict(outcome.refused) or 'none'}, transport errors: {len(outcome.transport_errors)}"
        )

    # then every answer arrived, each refusal is a documented JSON error, and task ids are unique
    assert outcome.transport_errors == []
    assert outcome.undocumented == []
    assert len(accepted) == len(outcome.accepted) > 0

    # and every accepted task has a record, and nothing has a record that was not accepted
    records = TaskRecord.objects.filter(task_name__endswith="generate_ai_response")
    assert set(records.values_list("task_id", flat=True)) == accepted

    # and each one ends SUCCESS, with a SUCCESS result and exactly one assistant message
    drain_started = time.monotonic()
    wait_for(
        lambda: (
            records.filter(state=TaskState.SUCCESS).count() == len(accepted)
            or records.exclude(state__in=[TaskState.PENDING, TaskState.STARTED, TaskState.SUCCESS]).exists()
        ),
        timeout=DRAIN_TIMEOUT,
        interval=0.5,
        what=f"{len(accepted)} accepted tasks to finish",
    )
    with capsys.disabled():
        print(f"worker drained the backlog in {time.monotonic() - drain_started:.1f}s after the clients stopped")
    assert dict(Counter(records.values_list("state", flat=True))) == {TaskState.SUCCESS: len(accepted)}
    results = TaskResult.objects.filter(task_id__in=accepted)
    assert results.filter(status="SUCCESS").count() == len(accepted)
    replies = Counter(Message.objects.filter(role=MessageRole.ASSISTANT).values_list("task_id", flat=True))
    assert set(replies) == accepted
    assert set(replies.values()) == {1}
