"""Conversations with their messages, and knowledge documents re-indexed from the admin."""

from decimal import Decimal

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.urls import reverse

from conversations.models import KnowledgeDocument
from tasks_app.models import TaskRecord
from tests.factories import ConversationFactory, KnowledgeDocumentFactory, MessageFactory, TaskRecordFactory
from tests.support.waiting import wait_for
from tests.tasks_app.admin.conftest import csrf_token_of

pytestmark = [pytest.mark.django_db(transaction=True)]

DOCUMENTS = reverse("admin:conversations_knowledgedocument_changelist")


@pytest.fixture
def conversation():
    conversation = ConversationFactory(public_id="conv_123", user_id="user_456", title="Refunds")
    MessageFactory(conversation=conversation, role="user", content="How do refunds work?", task_id="t-1")
    MessageFactory(
        conversation=conversation,
        role="assistant",
        content="Refunds take five days.",
        model="gpt-4o-mini",
        prompt_tokens=120,
        completion_tokens=30,
        cost=Decimal("0.000036"),
        task_id="t-1",
    )
    TaskRecordFactory(task_id="t-1", task_name="tasks_app.tasks.ai_tasks.generate_ai_response", queue="q")
    return conversation


def test_a_conversation_shows_its_messages_with_role_tokens_cost_and_model(admin_client, conversation):
    # when the operator opens the conversation
    response = admin_client.get(reverse("admin:conversations_conversation_change", args=[conversation.pk]))

    # then each message shows its role, tokens, cost and model, linked to the task that wrote it
    page = response.content.decode()
    assert response.status_code == 200
    for expected in ("How do refunds work?", "Refunds take five days.", "gpt-4o-mini", "120", "30", "0.000036"):
        assert expected in page
    assert reverse("admin:tasks_app_taskrecord_change", args=[TaskRecord.objects.get(task_id="t-1").pk]) in page
    assert "120 prompt + 30 completion tokens" in page


def test_the_task_admin_links_to_the_conversation_found_by_search(admin_client, conversation):
    # when the operator follows the task list's conversation link (a search by conversation id)
    response = admin_client.get(reverse("admin:conversations_conversation_changelist"), {"q": "conv_123"})

    # then that conversation is the one listed
    assert [row.public_id for row in response.context["cl"].result_list] == ["conv_123"]


@pytest.mark.e2e
def test_reindex_selected_documents_indexes_them_through_a_worker(admin_client, admin_user, celery_worker):
    # given a document that was never indexed
    document = KnowledgeDocumentFactory(user_id="user_456", title="Refunds", content="Refunds take 5 days.")
    assert document.is_stale

    # when the operator re-indexes it from the admin
    token = csrf_token_of(admin_client.get(DOCUMENTS))
    response = admin_client.post(
        DOCUMENTS,
        {"action": "reindex_selected", "_selected_action": [document.pk], "csrfmiddlewaretoken": token},
        follow=True,
    )

    # then a worker indexes it, the operator is told, and the admin log names the operator
    assert any("Queued re-indexing of 1 document" in str(m) for m in response.context["messages"])
    wait_for(lambda: not KnowledgeDocument.objects.get(pk=document.pk).is_stale, what="the document to be indexed")
    assert KnowledgeDocument.objects.get(pk=document.pk).chunk_count >= 1
    entry = LogEntry.objects.get(object_id=str(document.pk), action_flag=CHANGE)
    assert entry.user == admin_user
    assert "Re-index queued" in entry.get_change_message()


@pytest.mark.e2e
def test_a_document_edited_in_the_admin_is_indexed_again(admin_client, celery_worker):
    # given an indexed document
    document = KnowledgeDocumentFactory(user_id="user_456", title="Refunds", content="Old text.")
    change_url = reverse("admin:conversations_knowledgedocument_change", args=[document.pk])

    # when the operator edits its content in the admin
    page = admin_client.get(change_url)
    response = admin_client.post(
        change_url,
        {
            "csrfmiddlewaretoken": csrf_token_of(page),
            "user_id": "user_456",
            "title": "Refunds",
            "content": "Refunds now take three days.",
            "format": "text",
        },
    )

    # then the new content is indexed by a worker
    assert response.status_code == 302, response.content.decode()[:1000]
    wait_for(
        lambda: document.chunks.filter(content__contains="three days").exists(),
        what="the edited document to be indexed",
    )
