"""The knowledge base: upload, indexing by a worker, retrieval into the prompt."""

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from conversations.knowledge import knowledge_reindex, knowledge_relevant_chunks, searchable, split_into_chunks
from conversations.models import KnowledgeChunk, KnowledgeDocument
from tasks_app.models import TaskRecord, TaskState
from tasks_app.tasks.ai_tasks import generate_ai_response
from tests.conversations.conftest import LLM_TEST_QUEUE
from tests.factories import KnowledgeDocumentFactory
from tests.support.fake_llm import answer
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

REFUND_POLICY = """# Refund policy

Orders can be refunded within 30 days of delivery. Refunds go back to the original payment card.

# Shipping

Parcels ship from Hangzhou every weekday; express delivery takes two days."""


def indexed(document_id: int) -> KnowledgeDocument:
    return wait_for(
        lambda: KnowledgeDocument.objects.filter(pk=document_id, indexed_at__isnull=False).first(),
        what=f"document {document_id} to be indexed",
    )


def test_uploaded_document_is_indexed_and_its_best_chunks_reach_the_prompt(api, user, llm_worker, fake_llm):
    # given a Markdown document of user_456 uploaded through the API, and one of another user
    response = api.post(
        "/api/v1/knowledge/documents/",
        {"user_id": "user_456", "file": SimpleUploadedFile("policies.md", REFUND_POLICY.encode())},
        format="multipart",
    )
    assert response.status_code == 201, response.data
    assert response.data["title"] == "policies"
    assert response.data["format"] == "markdown"
    assert response.data["is_stale"] is True
    other = api.post(
        "/api/v1/knowledge/documents/",
        {"user_id": "user_999", "title": "Secret", "content": "Refunds for user 999 are handled by Bob."},
        format="json",
    )

    # when a worker indexed them
    document = indexed(response.data["id"])
    indexed(other.data["id"])
    assert TaskRecord.objects.get(task_id=response.data["index_task_id"]).state == TaskState.SUCCESS

    # then the document is split at its headings and is no longer stale
    assert document.chunk_count == 2
    assert not KnowledgeDocument.objects.stale().filter(pk=document.pk).exists()

    # and when user_456 asks about refunds
    fake_llm.script(answer("Within 30 days."))
    sent = generate_ai_response.apply_async(
        # the tenant the document was uploaded in: its knowledge is searched, no other
        kwargs={
            "conversation_id": "conv_kb",
            "user_message": "Can I get a refund?",
            "user_id": "user_456",
            "tenant_id": user.pk,
        },
        queue=LLM_TEST_QUEUE,
    )
    wait_for(lambda: TaskRecord.objects.filter(task_id=sent.id, state=TaskState.SUCCESS).exists(), what="reply")

    # then the provider received the refund passage, not the shipping one nor another user's document
    system_text = "\n".join(m["content"] for m in fake_llm.requests[0].messages if m["role"] == "system")
    assert "refunded within 30 days" in system_text
    assert "(policies)" in system_text  # the passage names its document
    assert "Hangzhou" not in system_text
    assert "Bob" not in system_text


def test_reindexing_replaces_the_chunks(user):
    # given an indexed document
    document = KnowledgeDocumentFactory(user_id="u1", title="Doc", content="alpha one\n\nbeta two")
    knowledge_reindex(document)
    old_ids = set(KnowledgeChunk.objects.filter(document=document).values_list("id", flat=True))

    # when its content changes and it is indexed again
    KnowledgeDocument.objects.filter(pk=document.pk).update(content="gamma three")
    document.refresh_from_db()
    knowledge_reindex(document)

    # then only the new chunks remain, searchable, and the old words are gone
    chunks = list(KnowledgeChunk.objects.filter(document=document))
    assert [chunk.content for chunk in chunks] == ["gamma three"]
    assert not old_ids & {chunk.id for chunk in chunks}
    assert knowledge_relevant_chunks(tenant_id=None, user_id="u1", text="gamma?", limit=3) == chunks
    assert knowledge_relevant_chunks(tenant_id=None, user_id="u1", text="alpha", limit=3) == []


def test_a_changed_document_is_stale_until_reindexed():
    # given an indexed document
    document = KnowledgeDocumentFactory(user_id="u1", title="Doc", content="text")
    assert KnowledgeDocument.objects.stale().filter(pk=document.pk).exists()
    knowledge_reindex(document)
    assert not KnowledgeDocument.objects.stale().filter(pk=document.pk).exists()

    # when it is edited
    document.refresh_from_db()
    document.content = "new text"
    document.save()

    # then it is stale again
    assert KnowledgeDocument.objects.stale().filter(pk=document.pk).exists()


def test_chunks_are_ranked_by_relevance(settings):
    # given a document of three short paragraphs, indexed one chunk per paragraph
    settings.KNOWLEDGE_CHUNK_SIZE = 30
    document = KnowledgeDocumentFactory(
        user_id="u1",
        title="Notes",
        content="A refund note.\n\nParcels ship from Hangzhou.\n\nThe refund desk: every refund.",
    )
    assert knowledge_reindex(document).chunk_count == 3

    # when the best chunks for a question are asked for
    best = knowledge_relevant_chunks(tenant_id=None, user_id="u1", text="Where is the refund desk?", limit=3)

    # then the chunk matching more of the question comes first, and a chunk matching none is left out
    assert [chunk.position for chunk in best] == [2, 0]


def test_search_vectors_have_a_gin_index():
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'kchunk_search_gin'")
        (definition,) = cursor.fetchone()
    assert "USING gin (search_vector)" in definition


def test_long_paragraphs_are_cut_near_the_size():
    text = " ".join(["word"] * 100)
    pieces = split_into_chunks(text, size=50)
    assert all(len(piece) <= 50 for piece in pieces)
    assert " ".join(pieces) == text


def index_task_done(response) -> None:
    """Wait for the indexing a test queued, so no worker writes while the test database is flushed."""
    wait_for(
        lambda: TaskRecord.objects.filter(task_id=response.data["index_task_id"], state=TaskState.SUCCESS).exists(),
        what="the indexing task",
    )


def test_documents_are_listed_to_their_uploader_only(api, other_user, llm_worker):
    # given a document uploaded by another API user
    KnowledgeDocumentFactory(user_id="u1", title="Theirs", content="x", created_by=other_user)

    # when the caller uploads one and lists
    created = api.post("/api/v1/knowledge/documents", {"user_id": "u1", "title": "Mine", "content": "y"}, format="json")
    listed = api.get("/api/v1/knowledge/documents")

    # then only their own is listed
    assert created.status_code == 201
    assert [item["title"] for item in listed.data["results"]] == ["Mine"]
    index_task_done(created)


def test_a_document_needs_content(api):
    response = api.post("/api/v1/knowledge/documents/", {"user_id": "u1", "title": "Empty"}, format="json")
    assert response.status_code == 400
    assert "content" in response.data["errors"]


def test_editing_a_document_queues_its_reindexing(api, user, llm_worker):
    document = KnowledgeDocumentFactory(user_id="u1", title="Doc", content="old", created_by=user)

    response = api.patch(f"/api/v1/knowledge/documents/{document.pk}/", {"content": "new"}, format="json")

    assert response.status_code == 200
    record = TaskRecord.objects.get(task_id=response.data["index_task_id"])
    assert record.task_name == "tasks_app.tasks.knowledge_tasks.index_document"
    assert record.kwargs == {"document_id": document.pk}
    assert record.submitted_by == user
    index_task_done(response)


def test_chinese_passages_are_found_by_a_chinese_question(settings):
    # given a Chinese document of three passages (no spaces between words), one chunk each
    settings.KNOWLEDGE_CHUNK_SIZE = 20
    document = KnowledgeDocumentFactory(
        user_id="u_zh",
        title="客服手册",
        content="发货时间：每个工作日从杭州发货。\n\n退款政策：收货后三十天内可以申请退款。\n\n会员积分可以兑换优惠券。",
    )
    assert knowledge_reindex(document).chunk_count == 3

    # when a question shares words, not whole sentences, with one of them
    best = knowledge_relevant_chunks(tenant_id=None, user_id="u_zh", text="我想申请退款，需要多久？", limit=3)

    # then that passage comes first
    assert best
    assert best[0].position == 1
    assert knowledge_relevant_chunks(tenant_id=None, user_id="u_zh", text="积分怎么用", limit=1)[0].position == 2


def test_unspaced_runs_are_searched_as_pairs_and_other_text_is_kept():
    assert searchable("退款政策 refund desk").split() == ["退款", "款政", "政策", "refund", "desk"]
    assert searchable("用Django").split() == ["用", "Django"]
    assert searchable("カタカナ").split() == ["カタ", "タカ", "カナ"]
    assert searchable("no change, 123") == "no change, 123"


def test_the_migration_hands_indexed_chinese_documents_to_the_stale_reindex():
    # given, before the migration, an indexed Chinese document and an indexed English one
    executor = MigrationExecutor(connection)
    before = [("conversations", "0001_initial")]
    executor.migrate(before)
    old = executor.loader.project_state(before).apps.get_model("conversations", "KnowledgeDocument")
    indexed_at = timezone.now() + timedelta(minutes=1)  # after updated_at: not stale
    chinese = old.objects.create(user_id="u", title="手册", content="退款政策", indexed_at=indexed_at)
    english = old.objects.create(user_id="u", title="Manual", content="refund policy", indexed_at=indexed_at)

    # when the migration runs
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    # then only the Chinese one is stale, for the periodic re-index to rebuild
    stale = set(KnowledgeDocument.objects.stale().values_list("pk", flat=True))
    assert chinese.pk in stale
    assert english.pk not in stale
