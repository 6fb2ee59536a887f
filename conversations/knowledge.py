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

import re

from django.conf import settings
from django.contrib.postgres.search import SearchVector
from django.db import transaction
from django.db.models import Case, Value, When
from django.utils import timezone

from conversations.models import DocumentFormat, KnowledgeChunk, KnowledgeDocument

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


def knowledge_reindex(document: KnowledgeDocument) -> KnowledgeDocument:
    """Rebuild a document's chunks; readers see the old chunks or the new ones, never a mix."""
    config = settings.KNOWLEDGE_SEARCH_CONFIG
    with transaction.atomic():
        # The row lock makes concurrent re-indexings of one document take turns.
        document = KnowledgeDocument.objects.select_for_update().get(pk=document.pk)
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
        indexed_at = timezone.now()
        # update(), not save(): save() would bump updated_at and make the document look stale.
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


def knowledge_relevant_chunks(*, user_id: str, text: str, limit: int) -> list[KnowledgeChunk]:
    """The chat user's chunks that best match `text`, best first (a ranked full-text query).

    Each chunk carries its document's title as `document_title`. Written as SQL: it runs for
    every AI reply, and compiling the ORM's ranked full-text query (SearchQuery, SearchRank,
    select_related) cost the worker more CPU than PostgreSQL spends running it.
    """
    terms = _search_terms(text)
    if terms is None or limit <= 0:
        return []
    chunks, documents = KnowledgeChunk._meta.db_table, KnowledgeDocument._meta.db_table
    sql = f"""
        SELECT c.*, d.title AS document_title
        FROM {chunks} c JOIN {documents} d ON d.id = c.document_id, to_tsquery(%s::regconfig, %s) query
        WHERE c.user_id = %s AND c.search_vector @@ query
        ORDER BY ts_rank(c.search_vector, query) DESC, c.document_id, c.position
        LIMIT %s
    """
    return list(KnowledgeChunk.objects.raw(sql, [settings.KNOWLEDGE_SEARCH_CONFIG, terms, user_id, limit]))


def knowledge_document_save(
    *, document: KnowledgeDocument | None = None, created_by=None, **fields
) -> KnowledgeDocument:
    """Create a document (or change one); the caller then schedules its indexing."""
    document = document or KnowledgeDocument(created_by=created_by)
    for name, value in fields.items():
        setattr(document, name, value)
    document.full_clean()
    document.save()
    return document


def knowledge_schedule_reindex(document: KnowledgeDocument, *, requested_by=None) -> str | None:
    """Queue the indexing task; returns its task id, or None when the broker is unreachable.

    A document that could not be queued stays stale (indexed_at empty or older than updated_at),
    so the periodic re-index of stale documents picks it up later.
    """
    from tasks_app.services import BrokerUnavailable, submit_task

    try:
        record = submit_task(
            task_name="tasks_app.tasks.knowledge_tasks.index_document",
            kwargs={"document_id": document.pk},
            submitted_by=requested_by,
        )
    except BrokerUnavailable:
        return None
    return record.task_id
