"""Building a prompt costs the same number of queries however long the conversation is."""

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations.services import conversation_generate_reply

pytestmark = pytest.mark.django_db


def queries_for_one_reply(conversation_id: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        conversation_generate_reply(
            conversation_id=conversation_id, user_message="and now?", user_id="user_q", task_id=str(uuid.uuid4())
        )
    return len(captured.captured_queries)


def test_history_is_read_in_one_query_not_one_per_message():
    # given a conversation with one turn (its first reply also creates it), and after thirty more
    queries_for_one_reply("conv_queries")
    early = queries_for_one_reply("conv_queries")
    for turn in range(30):
        conversation_generate_reply(
            conversation_id="conv_queries", user_message=f"turn {turn}", user_id="user_q", task_id=str(uuid.uuid4())
        )

    # then the next reply costs no more queries than the early one did
    assert queries_for_one_reply("conv_queries") == early
