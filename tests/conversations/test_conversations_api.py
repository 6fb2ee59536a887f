"""/api/v1/conversations/ : create, list the caller's own, show with messages."""

import pytest
from rest_framework.test import APIClient

from conversations.models import Conversation
from tests.factories import ConversationFactory, MessageFactory

pytestmark = pytest.mark.django_db


def test_create_list_and_show_a_conversation(api, user):
    # when a conversation is created for a chat user
    created = api.post("/api/v1/conversations/", {"conversation_id": "conv_1", "user_id": "user_456"}, format="json")

    # then it is listed and shown, owned by the caller
    assert created.status_code == 201, created.data
    assert created.data["conversation_id"] == "conv_1"
    assert created.data["messages"] == []
    assert Conversation.objects.get(public_id="conv_1").created_by == user
    listed = api.get("/api/v1/conversations")
    assert [item["conversation_id"] for item in listed.data["results"]] == ["conv_1"]
    assert listed.data["results"][0]["tenant"] == user.username


def test_a_conversation_id_is_generated_when_omitted(api):
    created = api.post("/api/v1/conversations/", {"user_id": "user_456"}, format="json")
    assert created.status_code == 201
    assert created.data["conversation_id"].startswith("conv_")


def test_show_includes_messages_with_tokens_and_cost(api, user):
    conversation = ConversationFactory(public_id="conv_m", user_id="u", created_by=user)
    MessageFactory(conversation=conversation, role="user", content="hi")
    MessageFactory(
        conversation=conversation,
        role="assistant",
        content="hello",
        model="gpt-4o-mini",
        prompt_tokens=10,
        completion_tokens=5,
        cost="0.000123",
        task_id="t1",
    )

    shown = api.get("/api/v1/conversations/conv_m")

    assert shown.status_code == 200
    reply = shown.data["messages"][1]
    assert reply["tokens"] == {"prompt": 10, "completion": 5, "total": 15}
    assert reply["cost"] == 0.000123
    assert (reply["model"], reply["task_id"]) == ("gpt-4o-mini", "t1")


def test_callers_see_only_their_own_conversations_and_operators_see_all(api, other_user, staff_user):
    # given a conversation of another API user
    ConversationFactory(public_id="conv_other", user_id="u", created_by=other_user)

    # then the caller neither lists nor reads it, nor may name the other tenant
    assert api.get("/api/v1/conversations/").data["results"] == []
    assert api.get("/api/v1/conversations/conv_other/").status_code == 404
    assert api.get(f"/api/v1/conversations/conv_other/?tenant={other_user.username}").status_code == 403
    # and an operator (conversations.view_all) lists it and reads it in its tenant
    operator = APIClient()
    operator.force_authenticate(staff_user)
    assert [c["conversation_id"] for c in operator.get("/api/v1/conversations/").data["results"]] == ["conv_other"]
    assert operator.get(f"/api/v1/conversations/conv_other/?tenant={other_user.username}").status_code == 200
    assert operator.get("/api/v1/conversations/conv_other/?tenant=nobody").status_code == 400


def test_bad_input_is_a_400_with_field_errors(api, user):
    ConversationFactory(public_id="conv_taken", user_id="u", created_by=user)
    response = api.post("/api/v1/conversations/", {"conversation_id": "conv taken!"}, format="json")
    assert response.status_code == 400
    assert response.data["code"] == "invalid"
    assert set(response.data["errors"]) == {"conversation_id", "user_id"}
    taken = api.post("/api/v1/conversations/", {"conversation_id": "conv_taken", "user_id": "u"}, format="json")
    assert "already exists" in str(taken.data["errors"]["conversation_id"])


def test_anonymous_callers_are_refused():
    assert APIClient().get("/api/v1/conversations/").status_code == 401


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("/api/v1/conversations/?user_id=%00", 400),
        ("/api/v1/knowledge/documents/?user_id=%00", 400),
        ("/api/v1/conversations/%00/", 404),
        ("/api/v1/knowledge/documents/%00/", 404),
        ("/api/v1/knowledge/documents/abc/", 404),
    ],
)
def test_null_characters_and_bad_ids_are_client_errors_not_500(api, url, code):
    assert api.get(url).status_code == code


def test_a_binary_file_is_refused(api):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("blob.txt", b"text\x00with nul")
    response = api.post("/api/v1/knowledge/documents/", {"user_id": "u1", "file": upload}, format="multipart")
    assert response.status_code == 400
    assert "file" in response.data["errors"]
