"""An admitted reply's record is written in the admission's transaction, its message sent after the commit.

No worker: the replies go to a queue nobody consumes, so each test can look at what the broker holds.
"""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from conversations.models import ReplyAdmission
from conversations.services import submit_ai_generation
from tasks_app.models import TaskRecord, TaskState
from tasks_app.publishing import BrokerUnavailable
from tests.support.broker import broker_unreachable, queue_watch

pytestmark = pytest.mark.django_db(transaction=True)

QUEUE = "admission-publish-tests"  # no worker consumes it


@pytest.fixture
def broker():
    """Whether the broker holds a task's message in QUEUE; the queue is emptied afterwards."""
    with queue_watch(QUEUE) as holds:
        yield holds


@pytest.fixture
def broker_down():
    with broker_unreachable():
        yield


def send(tenant, conversation: str = "c1"):
    return submit_ai_generation(
        conversation_id=conversation,
        user_message="hello",
        temperature=0.5,
        user_id="chat-user",
        submitted_by=tenant,
        queue=QUEUE,
    )


def test_an_admitted_reply_takes_two_commits_and_leaves_after_them(broker, alice):
    # when a reply is submitted for a chat user with room
    with CaptureQueriesContext(connection) as queries:
        record = send(alice)

    # then its record was written in the admission's transaction: one commit for both
    statements = [query["sql"] for query in queries.captured_queries]
    record_insert = next(n for n, sql in enumerate(statements) if sql.startswith('INSERT INTO "tasks_app_taskrecord"'))
    begin = max(n for n, sql in enumerate(statements[:record_insert]) if sql == "BEGIN")
    commit = statements.index("COMMIT", record_insert)
    transaction_statements = statements[begin:commit]
    assert "COMMIT" not in transaction_statements
    assert any(sql.startswith('INSERT INTO "conversations_replyadmission"') for sql in transaction_statements)
    stored = TaskRecord.objects.get(task_id=record.task_id)
    assert (stored.state, stored.queue, stored.error, stored.submitted_by) == (TaskState.PENDING, QUEUE, "", alice)
    assert ReplyAdmission.objects.get(task_id=record.task_id).state == "admitted"
    assert broker(record.task_id)


def test_inside_a_transaction_the_admitted_reply_waits_for_the_commit(broker, alice):
    with transaction.atomic():
        record = send(alice)
        assert TaskRecord.objects.filter(task_id=record.task_id).exists()
        assert not broker(record.task_id)
    assert broker(record.task_id)


def test_an_admitted_reply_that_cannot_leave_keeps_neither_record_nor_place(broker_down, alice):
    with pytest.raises(BrokerUnavailable):
        send(alice)
    assert not TaskRecord.objects.exists()
    assert not ReplyAdmission.objects.exists()
