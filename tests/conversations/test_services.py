"""conversations.services without workers: idempotency, ownership, prompt building, cost."""

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection, connections

from conversations.llm.base import ChatMessage, Completion
from conversations.models import Conversation, Message
from conversations.prompts import build_prompt
from conversations.provider_calls import GenerationCancelled, complete_unless_stopped
from conversations.services import (
    ConversationForbidden,
    _create_once,
    conversation_for_generation,
    conversation_generate_reply,
    conversation_get_or_create,
)
from conversations.tokens import completion_cost
from tests.factories import ConversationFactory, MessageFactory
from tests.support.waiting import wait_for

pytestmark = pytest.mark.django_db


def test_running_the_same_task_twice_keeps_one_question_and_one_reply():
    # given a reply generated for a task
    first = conversation_generate_reply(conversation_id="conv_dup", user_message="hi", user_id="u", task_id="task-1")

    # when the same task runs again (a redelivered message)
    second = conversation_generate_reply(conversation_id="conv_dup", user_message="hi", user_id="u", task_id="task-1")

    # then the saved reply is returned and nothing is added
    assert second == first
    assert list(Message.objects.filter(conversation__public_id="conv_dup").values_list("role", flat=True)) == [
        "user",
        "assistant",
    ]


@pytest.mark.parametrize(
    "in_a_transaction",
    [pytest.param(True, id="inside-a-transaction"), pytest.param(False, marks=pytest.mark.django_db(transaction=True))],
)
def test_a_delivery_that_lost_the_race_shares_the_question_and_reply_saved_first(in_a_transaction):
    # given another delivery of the same task saved the question and the reply while this one ran
    conversation = ConversationFactory(public_id="conv_race", user_id="u")
    question = MessageFactory(conversation=conversation, role="user", content="hi", task_id="task-race")
    reply = MessageFactory(conversation=conversation, role="assistant", content="hello", task_id="task-race")

    # when this delivery tries to save its own (its INSERTs are refused by the unique task/role pair)
    saved = [
        _create_once(
            lambda role=role: MessageFactory(conversation=conversation, role=role, content="x", task_id="task-race"),
            task_id="task-race",
            role=role,
        )
        for role in ("user", "assistant")
    ]

    # then it takes the saved ones, and the connection is still usable
    assert saved == [question, reply]
    assert Message.objects.filter(task_id="task-race").count() == 2


def test_a_retry_answers_the_question_its_failed_task_left_unanswered():
    # given a task that saved its question and failed before a reply
    conversation = ConversationFactory(public_id="conv_retried", user_id="u")
    MessageFactory(conversation=conversation, role="user", content="hi", task_id="task-failed")

    # when its retry (a new task id) runs
    conversation_generate_reply(
        conversation_id="conv_retried",
        user_message="hi",
        user_id="u",
        task_id="task-retry",
        retried_task_ids=["task-failed"],
    )

    # then the question is not saved again: the retry's reply answers it
    messages = Message.objects.filter(conversation=conversation).order_by("id")
    assert [(m.role, m.task_id) for m in messages] == [("user", "task-failed"), ("assistant", "task-retry")]


def test_a_retry_of_an_answered_task_asks_again():
    # given a task whose question was answered (it was cancelled after the reply was saved)
    conversation_generate_reply(conversation_id="conv_answered", user_message="hi", user_id="u", task_id="task-done")

    # when it is retried
    conversation_generate_reply(
        conversation_id="conv_answered",
        user_message="hi",
        user_id="u",
        task_id="task-again",
        retried_task_ids=["task-done"],
    )

    # then the retry is a turn of its own, question and reply
    messages = Message.objects.filter(conversation__public_id="conv_answered").order_by("id")
    assert [(m.role, m.task_id) for m in messages] == [
        ("user", "task-done"),
        ("assistant", "task-done"),
        ("user", "task-again"),
        ("assistant", "task-again"),
    ]


def test_get_or_create_creates_once_then_finds_it(user):
    created, is_new = conversation_get_or_create(public_id="conv_goc", user_id="user_1", tenant_id=user.pk)
    found, found_new = conversation_get_or_create(public_id="conv_goc", user_id="user_2", tenant_id=user.pk)

    assert (is_new, found_new) == (True, False)
    assert found.pk == created.pk
    # the row is the one created, whatever the second call asked for
    stored = Conversation.objects.get(public_id="conv_goc")
    assert (stored.user_id, stored.created_by, stored.title) == ("user_1", user, "")
    assert (found.user_id, found.created_by_id, found.created_at) == ("user_1", user.pk, stored.created_at)
    assert stored.created_at is not None
    assert stored.updated_at is not None
    # and another tenant (here: code, with no tenant) has a conversation of its own under that id
    code_made, code_new = conversation_get_or_create(public_id="conv_goc", user_id="user_3", tenant_id=None)
    assert code_new is True
    assert code_made.pk != created.pk
    assert conversation_get_or_create(public_id="conv_goc", user_id="x", tenant_id=None)[0].pk == code_made.pk


@pytest.mark.django_db(transaction=True)
def test_get_or_create_finds_a_conversation_another_transaction_was_inserting():
    # given another connection inserting conv_concurrent in a transaction it has not committed yet
    other = connections.create_connection("default")
    other_cursor = other.cursor()
    other_cursor.execute("BEGIN")
    other_cursor.execute(
        "INSERT INTO conversations_conversation (public_id, user_id, title, created_at, updated_at) "
        "VALUES ('conv_concurrent', 'user_other', '', now(), now())"
    )

    # when this connection asks for the same conversation (its INSERT waits for the other's
    # transaction), and the other commits meanwhile
    def ask() -> tuple[Conversation, bool]:
        try:
            return conversation_get_or_create(public_id="conv_concurrent", user_id="user_me", tenant_id=None)
        finally:
            connection.close()  # this thread's own connection

    with ThreadPoolExecutor(1) as pool:
        asked = pool.submit(ask)
        wait_for(lambda: backends_waiting_on_a_lock() > 0, timeout=10, what="the INSERT to wait on the other's row")
        other_cursor.execute("COMMIT")
        conversation, created = asked.result(timeout=10)
    other.close()

    # then it gets the other transaction's row, not an error and not a second row
    assert created is False
    assert conversation.user_id == "user_other"
    assert Conversation.objects.filter(public_id="conv_concurrent").count() == 1


def backends_waiting_on_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return cursor.fetchone()[0]


def test_a_new_conversation_is_created_for_the_caller(user):
    conversation = conversation_for_generation(conversation_id="conv_new", user_id="user_456", requested_by=user)
    assert (conversation.user_id, conversation.created_by) == ("user_456", user)


def test_another_chat_users_conversation_is_forbidden(user):
    ConversationFactory(public_id="conv_a", user_id="user_1", created_by=user)
    with pytest.raises(ConversationForbidden):
        conversation_for_generation(conversation_id="conv_a", user_id="user_2", requested_by=user)


def test_another_api_users_conversation_of_the_same_id_is_never_reached(user, other_user, staff_user):
    theirs = ConversationFactory(public_id="conv_b", user_id="user_1", created_by=user)
    for caller in (other_user, staff_user):
        mine = conversation_for_generation(conversation_id="conv_b", user_id="user_1", requested_by=caller)
        assert mine.pk != theirs.pk
        assert mine.created_by_id == caller.pk
    assert conversation_for_generation(conversation_id="conv_b", user_id="user_1", requested_by=user).pk == theirs.pk


def test_a_conversation_started_from_code_is_never_claimed_by_an_api_caller(user):
    from_code = ConversationFactory(public_id="conv_code", user_id="user_1")
    mine = conversation_for_generation(conversation_id="conv_code", user_id="user_1", requested_by=user)
    assert mine.pk != from_code.pk
    assert Conversation.objects.get(pk=from_code.pk).created_by is None


def test_history_is_cut_to_the_token_budget(settings):
    # given a conversation of four long messages and a budget that holds two of them
    settings.LLM_HISTORY_TOKEN_BUDGET = 250
    conversation = ConversationFactory(public_id="conv_long", user_id="u")
    for number in range(4):
        MessageFactory(conversation=conversation, role="user", content=f"{number} " + "x" * 400)
    question = MessageFactory(conversation=conversation, role="user", content="and now?")

    # when the prompt is built
    prompt = build_prompt(conversation, question)

    # then it holds the system prompt, the two newest earlier messages in order, and the question
    assert [message.content[:1] for message in prompt[1:-1]] == ["2", "3"]
    assert prompt[0].role == "system"
    assert prompt[-1] == ChatMessage("user", "and now?")


def test_cost_uses_the_price_table_and_its_environment_override(settings):
    settings.LLM_PRICES = {**settings.LLM_PRICES, "my-model": {"prompt": 0.002, "completion": 0.004}}
    assert completion_cost(model="my-model", prompt_tokens=1000, completion_tokens=500) == Decimal("0.004000")
    assert completion_cost(model="gpt-4o-2024-08-06", prompt_tokens=1000, completion_tokens=0) == Decimal("0.002500")
    assert completion_cost(model="unknown-model", prompt_tokens=1000, completion_tokens=1000) == Decimal(0)


class BlockingProvider:
    name = "blocking"

    def __init__(self) -> None:
        self.closed = threading.Event()

    def stream(self, messages, *, temperature, on_text):
        self.closed.wait(10)
        raise ConnectionError("client closed")

    def close(self):
        self.closed.set()


def test_waiting_on_the_provider_ends_when_the_task_should_stop():
    # given a provider that does not answer
    provider = BlockingProvider()
    checks = iter([False, True])

    # when the task is found cancelled while waiting
    with pytest.raises(GenerationCancelled):
        complete_unless_stopped(
            provider, [ChatMessage("user", "hi")], temperature=0.7, should_stop=lambda: next(checks)
        )

    # then the request in flight was abandoned
    assert provider.closed.is_set()


def test_provider_errors_reach_the_caller():
    class Failing:
        def stream(self, messages, *, temperature, on_text):
            raise ValueError("bad")

        def close(self):
            pass

    with pytest.raises(ValueError, match="bad"):
        complete_unless_stopped(Failing(), [], temperature=0.7, should_stop=lambda: False)


def test_offline_answers_are_deterministic():
    class Fixed:
        def stream(self, messages, *, temperature, on_text):
            on_text("o")
            on_text("k")
            return Completion("ok", "m", 1, 2)

        def close(self):
            pass

    completion = complete_unless_stopped(Fixed(), [], temperature=0.7, should_stop=lambda: False)
    assert completion.total_tokens == 3


@pytest.mark.parametrize(
    ("header", "expected"),
    [("2", 2.0), ("0.5", 0.5), (None, None), ("", None), ("soon", None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_retry_after_is_read_as_seconds_or_a_date(header, expected):
    from conversations.llm.openai_compatible import parse_retry_after

    assert parse_retry_after(header) == expected
