"""The offline provider end to end, with the settings `make run` uses when nothing is configured."""

import json

import pytest
from django.conf import settings
from django_celery_results.models import TaskResult

from claw_ai.celery import celery_app
from conversations.models import Conversation, Message
from tasks_app.models import TaskRecord, TaskState
from tasks_app.tasks.ai_tasks import generate_ai_response
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def test_offline_provider_answers_with_no_key_and_no_network(celery_worker):
    # given the default settings: no provider configured
    assert settings.LLM_PROVIDER == "offline"

    # when a reply is generated the way the seed sends it
    sent = generate_ai_response.apply_async(
        kwargs={"conversation_id": "conv_123", "user_message": "你好", "user_id": "user_456"},
        queue="ai_high_priority",
        priority=8,
    )

    # then it succeeds with a deterministic answer, clearly from the offline model
    result = sent.get(timeout=30)
    assert result["conversation_id"] == "conv_123"
    assert result["model"] == "offline-echo"
    assert "你好" in result["response"]
    assert "offline" in result["response"]
    assert result["tokens"]["total"] == result["tokens"]["prompt"] + result["tokens"]["completion"] > 0
    assert result["cost"] == 0.0
    assert celery_app.AsyncResult(sent.id).status == "SUCCESS"
    # and the unknown conversation was created for the user, with both messages
    conversation = Conversation.objects.get(public_id="conv_123")
    assert conversation.user_id == "user_456"
    assert conversation.title == "你好"
    assert list(conversation.messages.values_list("role", flat=True)) == ["user", "assistant"]
    assert Message.objects.get(task_id=sent.id, role="assistant").model == "offline-echo"


def test_a_conversation_of_another_user_is_refused(celery_worker):
    # given a conversation of user_1
    first = generate_ai_response.apply_async(
        kwargs={"conversation_id": "conv_owned", "user_message": "hi", "user_id": "user_1"}
    )
    first.get(timeout=30)

    # when a task for user_2 names it
    second = generate_ai_response.apply_async(
        kwargs={"conversation_id": "conv_owned", "user_message": "let me in", "user_id": "user_2"}
    )

    # then it fails at once, saying why, and adds nothing to the conversation
    record = wait_for(
        lambda: TaskRecord.objects.filter(task_id=second.id, state=TaskState.FAILURE).first(),
        what="the second task to fail",
    )
    assert "belongs to another user" in record.error
    assert record.retries == 0
    assert Message.objects.filter(conversation__public_id="conv_owned").count() == 2
    assert json.loads(TaskResult.objects.get(task_id=second.id).result)["exc_type"] == "ConversationForbidden"
