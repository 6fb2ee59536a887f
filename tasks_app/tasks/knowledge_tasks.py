"""Knowledge-base indexing (queue `knowledge_default`)."""

from celery import shared_task

from conversations.knowledge import IndexingBusy, knowledge_reindex
from conversations.models import KnowledgeDocument
from tasks_app.tasks.base import TRANSIENT_EXCEPTIONS, BaseTaskWithRetry


@shared_task(
    bind=True,
    base=BaseTaskWithRetry,
    name="tasks_app.tasks.knowledge_tasks.index_document",
    # Another indexing of the same document holds its lock: come back later rather than wait
    # on it holding a worker slot and a pooled connection.
    autoretry_for=(*TRANSIENT_EXCEPTIONS, IndexingBusy),
)
def index_document(self, document_id: int) -> dict:
    """Split a document into searchable chunks, replacing its old ones atomically.

    Safe to run twice: each run rebuilds the whole set. A document deleted meanwhile is skipped.
    """
    document = KnowledgeDocument.objects.filter(pk=document_id).first()
    if document is None:
        return {"document_id": document_id, "chunks": 0, "skipped": "document no longer exists"}
    document = knowledge_reindex(document)
    indexed_at = document.indexed_at.isoformat() if document.indexed_at else None  # set by the reindex
    return {"document_id": document.pk, "chunks": document.chunk_count, "indexed_at": indexed_at}
