"""POST /api/v1/tasks/ai/generate creates unknown conversations and refuses other users' ones."""

import pytest
from rest_framework.test import APIClient

from conversations.models import Conversation
from tasks_app.models import TaskRecord

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

GENERATE = "/api/v1/tasks/ai/generate"


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def body(conversation_id: str, user_id: str) -> dict:
    # Delayed: these tests need the tasks recorded, not run (a live worker writing while the test
    # database is flushed can deadlock the flush).
    return {"conversation_id": conversation_id, "user_message": "你好", "user_id": user_id, "countdown": 3600}


def test_an_unknown_conversation_is_created_for_the_user_and_the_caller(api, user):
    # when a reply is asked for a conversation nobody has used
    response = api.post(GENERATE, body("conv_fresh", "user_456"), format="json")

    # then it is accepted and the conversation exists, owned by the chat user and the caller
    assert response.status_code == 202, response.json()
    conversation = Conversation.objects.get(public_id="conv_fresh")
    assert (conversation.user_id, conversation.created_by) == ("user_456", user)
    assert api.get("/api/v1/conversations/conv_fresh").status_code == 200


def test_a_conversation_of_another_chat_user_is_403(api):
    # given a conversation of user_1
    assert api.post(GENERATE, body("conv_taken", "user_1"), format="json").status_code == 202

    # when the same caller names it for user_2
    response = api.post(GENERATE, body("conv_taken", "user_2"), format="json")

    # then it is refused with a message, and nothing is queued
    assert response.status_code == 403
    assert "another user" in response.json()["message"]
    assert TaskRecord.objects.filter(conversation_id="conv_taken").count() == 1


def test_another_api_users_conversation_id_names_a_conversation_of_the_callers_own(api, user, other_user):
    # given a conversation created by another API user (another tenant)
    assert client_for(other_user).post(GENERATE, body("conv_bobs", "user_1"), format="json").status_code == 202

    # when the caller names the same id, then it is accepted into a conversation of the caller's own
    assert api.post(GENERATE, body("conv_bobs", "user_1"), format="json").status_code == 202
    owners = set(Conversation.objects.filter(public_id="conv_bobs").values_list("created_by", flat=True))
    assert owners == {user.pk, other_user.pk}
