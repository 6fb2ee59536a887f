"""The knowledge base: documents split into chunks, searched with PostgreSQL full-text search.

No embedding model is needed: each chunk stores a tsvector (GIN-indexed) and a prompt takes the
chunks that rank best for the user's message. A document counts as stale when it was never
indexed or changed after its last indexing (KnowledgeDocument.objects.stale()).

Chinese and Japanese are written without spaces between words, and PostgreSQL's parser (core
PostgreSQL has no Chinese dictionary) reads a whole run of such characters as one word, so no
question could ever match it. Such runs are indexed and searched as overlapping pairs of
characters ("退款政策" → "退款 款政 政策"): the dictionary-free way of Lucene's CJK bigram analyzer.
A question shares pairs with the passages that answer it, and ranking puts those sharing most first.
"""

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.postgres.search import SearchVector
from django.db import transaction
from django.db.models import Case, Count, Sum, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from conversations import queries
from conversations.models import DocumentFormat, KnowledgeChunk, KnowledgeDocument
from tasks_app.models import TaskRecord
from tasks_app.services import BrokerUnavailable, submit_task

logger = logging.getLogger(__name__)

INDEX_DOCUMENT_TASK = "tasks_app.tasks.knowledge_tasks.index_document"
# Task states in which a document's indexing is joined rather than sent again: while it waits
# in the queue (or for a retry) it has not read the document yet; once running it has.
JOINABLE_WHILE_CHANGED = frozenset({"PENDING", "RETRY"})
JOINABLE = JOINABLE_WHILE_CHANGED | {"STARTED"}
# A claimed indexing whose record is still missing after this long was never published.
PUBLISH_GRACE = timedelta(seconds=60)
# First key of the documents' advisory locks (pg_try_advisory_xact_lock(space, document id)).
INDEXING_LOCK_SPACE = 0x4B444F43  # "KDOC"

# Search terms taken from one message: enough to rank well, few enough to keep the query cheap.
MAX_QUERY_TERMS = 32
_WORD = re.compile(r"\w+", re.UNICODE)
_HEADING = re.compile(r"^#{1,6}\s")
# Runs of Han (CJK unified ideographs, extension A, compatibility), Hiragana and Katakana.
_UNSPACED_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


def searchable(text: str) -> str:
    """`text` as it is indexed and searched: each run of unspaced script as overlapping pairs."""
    return _UNSPACED_RUN.sub(lambda run: f" {_pairs(run.group())} ", text)


def _pairs(run: str) -> str:
    if len(run) < 2:
        return run
    return " ".join(run[i : i + 2] for i in range(len(run) - 1))


def split_into_chunks(text: str, *, size: int, markdown: bool = False) -> list[str]:
    """Pieces of about `size` characters, cut between paragraphs (and before Markdown headings)."""
    paragraphs = [part.strip() for part in re.split(r"\n\s*\n", text) if part.strip()]
    chunks: list[str] = []
    current = ""
    for paragraph in paragraphs:
        for piece in _cut_long(paragraph, size):
            starts_section = markdown and _HEADING.match(piece)
            if current and (len(current) + len(piece) + 2 > size or starts_section):
                chunks.append(current)
                current = ""
            current = f"{current}\n\n{piece}" if current else piece
    if current:
        chunks.append(current)
    return chunks


def _cut_long(paragraph: str, size: int) -> list[str]:
    """A paragraph longer than `size`, cut at the last whitespace before each limit."""
    pieces = []
    while len(paragraph) > size:
        cut = paragraph.rfind(" ", 0, size)
        cut = cut if cut > size // 2 else size
        pieces.append(paragraph[:cut].strip())
        paragraph = paragraph[cut:].strip()
    if paragraph:
        pieces.append(paragraph)
    return pieces


class IndexingBusy(Exception):
    """Another indexing of the document holds its lock; this one is retried later, not made to wait."""


def _try_lock_document(document_id: int) -> bool:
    """Take the document's indexing lock for this transaction, or say at once that it is taken.

    An advisory lock, not a row lock: the API's edits of the document never wait on an indexing,
    and an indexing never holds a pooled connection waiting on another one.
    """
    return queries.try_advisory_xact_lock(INDEXING_LOCK_SPACE, document_id)


def knowledge_reindex(document: KnowledgeDocument) -> KnowledgeDocument:
    """Rebuild a document's chunks; readers see the old chunks or the new ones, never a mix.

    Raises IndexingBusy while another indexing of the document runs. The document counts as
    indexed only if it did not change meanwhile: an edit made during the indexing leaves it stale
    (and the edit's own indexing, or the periodic one, picks it up).
    """
    config = settings.KNOWLEDGE_SEARCH_CONFIG
    with transaction.atomic():
        if not _try_lock_document(document.pk):
            raise IndexingBusy(f"document {document.pk} is being indexed by another task")
        document = KnowledgeDocument.objects.get(pk=document.pk)
        pieces = split_into_chunks(
            document.content,
            size=settings.KNOWLEDGE_CHUNK_SIZE,
            markdown=document.format == DocumentFormat.MARKDOWN,
        )
        document.chunks.all().delete()
        chunks = KnowledgeChunk.objects.bulk_create(
            KnowledgeChunk(document=document, user_id=document.user_id, position=position, content=piece)
            for position, piece in enumerate(pieces)
        )
        # The title ranks above the body, so a chunk of a document named like the question wins.
        if chunks:
            body = Case(*(When(pk=chunk.pk, then=Value(searchable(chunk.content))) for chunk in chunks))
            document.chunks.update(
                search_vector=SearchVector(Value(searchable(document.title)), weight="A", config=config)
                + SearchVector(body, weight="B", config=config)
            )
        # update(), not save(): save() would bump updated_at and make the document look stale.
        unchanged = KnowledgeDocument.objects.filter(pk=document.pk, updated_at=document.updated_at)
        indexed_at = timezone.now() if unchanged.update(indexed_at=timezone.now(), chunk_count=len(pieces)) else None
        if indexed_at is None:  # edited since it was read: indexed as of the version read, so still stale
            indexed_at = document.updated_at
            KnowledgeDocument.objects.filter(pk=document.pk).update(indexed_at=indexed_at, chunk_count=len(pieces))
        document.indexed_at, document.chunk_count = indexed_at, len(pieces)
    return document


def _search_terms(text: str) -> str | None:
    """A raw tsquery matching any of the message's words, e.g. "'refund' | 'desk'"."""
    # Any term may match (OR): a question's words rarely all appear in one passage, and the
    # "simple" configuration keeps stop words. Ranking puts passages matching more terms first.
    terms = list(dict.fromkeys(word.lower() for word in _WORD.findall(searchable(text))))[:MAX_QUERY_TERMS]
    if not terms:
        return None
    return " | ".join(f"'{term}'" for term in terms)  # \w+ only: nothing to escape


def knowledge_relevant_chunks(*, tenant_id: int | None, user_id: str, text: str, limit: int) -> list[KnowledgeChunk]:
    """The chunks of the tenant's chat user that best match `text`, best first (a ranked full-text query).

    Both the tenant and the chat user must match: a chat user id names a person only inside its
    tenant. Each chunk carries its document's title as `document_title`. Written as SQL: it runs
    for every AI reply, and compiling the ORM's ranked full-text query (SearchQuery, SearchRank,
    select_related) cost the worker more CPU than PostgreSQL spends running it.
    """
    terms = _search_terms(text)
    if terms is None or limit <= 0:
        return []
    return queries.best_matching_chunks(
        search_config=settings.KNOWLEDGE_SEARCH_CONFIG, terms=terms, tenant_id=tenant_id, user_id=user_id, limit=limit
    )


class KnowledgeQuotaExceeded(Exception):
    """The tenant's knowledge base is full (documents or bytes)."""

    def __init__(self, *, what: str, used: int, limit: int) -> None:
        self.what, self.used, self.limit = what, used, limit
        super().__init__(f"{what}: {used} of {limit}")


@dataclass(frozen=True)
class IndexingRequest:
    """What asking for a document's indexing did."""

    task_id: str | None  # None: the broker was unreachable; the document stays stale
    joined: bool = False  # True: an indexing already queued (or running) was joined, nothing new sent


def knowledge_document_save(
    *, document: KnowledgeDocument | None = None, created_by=None, **fields
) -> KnowledgeDocument:
    """Create a document of the tenant `created_by` (or change one) within the tenant's bounds.

    Raises KnowledgeQuotaExceeded past KNOWLEDGE_MAX_DOCUMENTS_PER_TENANT documents or
    KNOWLEDGE_MAX_BYTES_PER_TENANT bytes; the caller then schedules its indexing.
    """
    document = document or KnowledgeDocument(created_by=created_by)
    for name, value in fields.items():
        setattr(document, name, value)
    document.full_clean()
    with transaction.atomic():
        if document.created_by_id is not None:
            # One tenant's saves take turns (a short lock on its user row), so two uploads cannot
            # both pass the check and overshoot the bound together.
            get_user_model().objects.select_for_update().filter(pk=document.created_by_id).exists()
            _ensure_within_bounds(document)
        document.save()
    return document


def _ensure_within_bounds(document: KnowledgeDocument) -> None:
    others = KnowledgeDocument.objects.filter(created_by_id=document.created_by_id).exclude(pk=document.pk)
    totals = others.aggregate(documents=Count("id"), stored=Coalesce(Sum("content_bytes"), 0))
    documents, stored = totals["documents"] + 1, totals["stored"] + len(document.content.encode())
    if documents > settings.KNOWLEDGE_MAX_DOCUMENTS_PER_TENANT:
        raise KnowledgeQuotaExceeded(
            what="documents", used=documents - 1, limit=settings.KNOWLEDGE_MAX_DOCUMENTS_PER_TENANT
        )
    if stored > settings.KNOWLEDGE_MAX_BYTES_PER_TENANT:
        raise KnowledgeQuotaExceeded(what="bytes", used=stored, limit=settings.KNOWLEDGE_MAX_BYTES_PER_TENANT)


def knowledge_schedule_reindex(
    document: KnowledgeDocument, *, requested_by=None, content_changed: bool = False
) -> IndexingRequest:
    """Queue the document's indexing, or join the one already in hand.

    One indexing per document is in hand at a time (`index_task_id`): a request while it is
    queued joins it (it reads the document when it runs, so it indexes the newest content), and
    so does a plain re-index while it runs; a change of content while it runs queues one more,
    since the running one may have read the old text. A document that could not be queued
    stays stale, so the periodic re-index of stale documents picks it up later.
    """
    joinable = JOINABLE_WHILE_CHANGED if content_changed else JOINABLE
    with transaction.atomic():
        claimed = KnowledgeDocument.objects.select_for_update().only("index_task_id", "index_requested_at")
        claimed = claimed.get(pk=document.pk)
        if _in_hand(claimed, joinable):
            return IndexingRequest(task_id=claimed.index_task_id, joined=True)
        task_id = str(uuid.uuid4())
        claim = {"index_task_id": task_id, "index_requested_at": timezone.now()}
        KnowledgeDocument.objects.filter(pk=document.pk).update(**claim)
    try:
        submit_task(
            task_name=INDEX_DOCUMENT_TASK,
            kwargs={"document_id": document.pk},
            submitted_by=requested_by,
            task_id=task_id,
        )
    except BrokerUnavailable:
        KnowledgeDocument.objects.filter(pk=document.pk, index_task_id=task_id).update(index_task_id="")
        return IndexingRequest(task_id=None)
    return IndexingRequest(task_id=task_id)


def _in_hand(document: KnowledgeDocument, joinable: frozenset[str]) -> bool:
    """Whether the document's last indexing task is still to be waited for."""
    if not document.index_task_id:
        return False
    state = TaskRecord.objects.filter(task_id=document.index_task_id).values_list("state", flat=True).first()
    if state is None:
        # Claimed, and its record not written yet: its publish is under way, unless it died.
        return document.index_requested_at is not None and (
            timezone.now() - document.index_requested_at < PUBLISH_GRACE
        )
    return state in joinable


def knowledge_reindex_stale(*, older_than: timedelta, limit: int) -> list[int]:
    """Queue indexing for documents still stale `older_than` after their last change.

    A document is stale when it was never indexed or changed since (its own save queues an
    indexing; this catches the ones whose queueing failed or whose task was lost). One with an
    indexing task already pending or running is left to it (knowledge_schedule_reindex joins
    it). Returns the ids queued.
    """
    queued: list[int] = []
    cutoff = timezone.now() - older_than
    for document in KnowledgeDocument.objects.stale().filter(updated_at__lt=cutoff).order_by("updated_at")[:limit]:
        request = knowledge_schedule_reindex(document, content_changed=True)
        if request.task_id and not request.joined:
            queued.append(document.pk)
    if queued:
        logger.info("queued indexing of %d stale knowledge document(s): %s", len(queued), queued)
    return queued
