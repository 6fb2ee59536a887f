"""The periodic re-index queues indexing only for documents left stale."""

from datetime import timedelta

import pytest
from django.utils import timezone

from conversations.models import KnowledgeDocument
from tasks_app.tasks.maintenance_tasks import reindex_stale_documents
from tests.factories import KnowledgeDocumentFactory, TaskRecordFactory
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def document(title: str, *, changed_ago: timedelta, indexed: bool = False) -> KnowledgeDocument:
    doc = KnowledgeDocumentFactory(user_id="user_456", title=title, content=f"{title} explains refunds.")
    changed = timezone.now() - changed_ago
    KnowledgeDocument.objects.filter(pk=doc.pk).update(
        updated_at=changed, indexed_at=changed + timedelta(seconds=1) if indexed else None
    )
    return doc


def test_only_documents_stale_past_the_grace_are_reindexed(celery_worker):
    # given a document never indexed for an hour, one just saved, one indexed, and one already being indexed
    forgotten = document("forgotten", changed_ago=timedelta(hours=1))
    just_saved = document("just saved", changed_ago=timedelta(seconds=5))
    indexed = document("indexed", changed_ago=timedelta(hours=1), indexed=True)
    in_hand = document("in hand", changed_ago=timedelta(hours=1))
    TaskRecordFactory(
        task_id="index-in-hand",
        task_name="tasks_app.tasks.knowledge_tasks.index_document",
        kwargs={"document_id": in_hand.pk},
        queue="knowledge_default",
    )
    KnowledgeDocument.objects.filter(pk=in_hand.pk).update(index_task_id="index-in-hand")

    # when the job runs with a 10-minute grace
    result = reindex_stale_documents(stale_for_seconds=600)

    # then only the forgotten document was queued, and a real worker indexed it
    assert result == {"queued": [forgotten.pk]}
    wait_for(lambda: KnowledgeDocument.objects.get(pk=forgotten.pk).indexed_at is not None, what="indexing")
    assert KnowledgeDocument.objects.get(pk=forgotten.pk).chunk_count >= 1
    for untouched in (just_saved, in_hand):
        assert KnowledgeDocument.objects.get(pk=untouched.pk).indexed_at is None
    assert KnowledgeDocument.objects.get(pk=indexed.pk).is_stale is False
