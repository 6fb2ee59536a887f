"""The chat domain's hand-written statements, in one place: column names from the models.

Each is SQL because it runs on every submit or every AI reply, and compiling the ORM's version
cost more CPU than PostgreSQL spends running it (bench/ANALYSIS.md, measurement 4); or because the
ORM has no word for it (an advisory lock). The rules around them stay in conversations.services
and conversations.knowledge.
"""

import functools

from django.db import connection
from django.db.models import Field, Model
from django.utils import timezone

from claw_ai.inserts import column_list, insert_fields, insert_values, loaded, placeholders
from conversations.models import (
    AdmissionState,
    Budget,
    BudgetReservation,
    Conversation,
    KnowledgeChunk,
    KnowledgeDocument,
    Message,
    ReplyAdmission,
)


def _column(model: type[Model], name: str) -> str:
    field = model._meta.get_field(name)
    # Only concrete fields are named here; a relation's reverse side or a generic key has no column.
    assert isinstance(field, Field), f"{model.__name__}.{name} is no concrete field"
    assert field.column is not None
    return connection.ops.quote_name(field.column)


# --- conversations -----------------------------------------------------------------------------
@functools.cache
def _insert_or_get_conversation_sql(*, tenant_is_null: bool) -> str:
    meta = Conversation._meta
    table, fields = connection.ops.quote_name(meta.db_table), column_list(meta.concrete_fields)
    public_id, tenant = _column(Conversation, "public_id"), _column(Conversation, "created_by")
    # Two shapes, so each SELECT is served by the (tenant, public id) unique index.
    same_tenant = f"{tenant} IS NULL" if tenant_is_null else f"{tenant} = %s"
    return (
        f"WITH new AS (INSERT INTO {table} ({column_list(insert_fields(Conversation))}) "
        f"VALUES ({placeholders(Conversation)}) ON CONFLICT ({tenant}, {public_id}) DO NOTHING RETURNING {fields}) "
        f"SELECT {fields}, true FROM new UNION ALL "
        f"SELECT {fields}, false FROM {table} WHERE {same_tenant} AND {public_id} = %s"
    )


def insert_or_get_conversation(new: Conversation) -> tuple[Conversation, bool] | None:
    """`new` inserted, or the tenant's stored conversation of its public id; and whether it is new.

    One statement in autocommit. None when another transaction inserted the row and committed
    while this INSERT waited on it, after this statement's snapshot: a new statement sees it.
    """
    tenant_id = new.created_by_id
    tenant = [] if tenant_id is None else [tenant_id]
    with connection.cursor() as cursor:
        cursor.execute(
            _insert_or_get_conversation_sql(tenant_is_null=tenant_id is None),
            [*insert_values(new), *tenant, new.public_id],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return loaded(Conversation, Conversation._meta.concrete_fields, row[:-1]), row[-1]


def conversation_touched(*, pk: int, title: str | None = None) -> None:
    """A message was added to the conversation: its updated_at is now (and its title `title`, if given)."""
    table = connection.ops.quote_name(Conversation._meta.db_table)
    updated_at, title_column, id_column = (_column(Conversation, name) for name in ("updated_at", "title", "id"))
    with connection.cursor() as cursor:
        if title is None:
            cursor.execute(f"UPDATE {table} SET {updated_at} = %s WHERE {id_column} = %s", [timezone.now(), pk])
        else:
            cursor.execute(
                f"UPDATE {table} SET {updated_at} = %s, {title_column} = %s WHERE {id_column} = %s",
                [timezone.now(), title, pk],
            )


# --- messages ------------------------------------------------------------------------------------
@functools.cache
def _messages_of_task_sql() -> str:
    fields = Message._meta.concrete_fields
    table = connection.ops.quote_name(Message._meta.db_table)
    return f"SELECT {column_list(fields)} FROM {table} WHERE {_column(Message, 'task_id')} = %s"


def messages_of_task(task_id: str) -> list[Message]:
    """What a run of the AI task `task_id` saved: its question, and its reply if it got that far."""
    with connection.cursor() as cursor:
        cursor.execute(_messages_of_task_sql(), [task_id])
        return [loaded(Message, Message._meta.concrete_fields, row) for row in cursor.fetchall()]


def messages_before(*, conversation_id: int, before_id: int, limit: int) -> list[tuple[str, str]]:
    """(role, content) of the conversation's messages older than `before_id`, newest first, at most `limit`."""
    table = connection.ops.quote_name(Message._meta.db_table)
    role, content, conversation, pk = (_column(Message, name) for name in ("role", "content", "conversation", "id"))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {role}, {content} FROM {table} WHERE {conversation} = %s AND {pk} < %s "
            f"ORDER BY {pk} DESC LIMIT %s",
            [conversation_id, before_id, limit],
        )
        return cursor.fetchall()


# --- knowledge ---------------------------------------------------------------------------------
def try_advisory_xact_lock(space: int, key: int) -> bool:
    """Take the advisory lock (space, key) for this transaction, or say at once that it is taken."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [space, key])
        return cursor.fetchone()[0]


def best_matching_chunks(
    *, search_config: str, terms: str, tenant_id: int | None, user_id: str, limit: int
) -> list[KnowledgeChunk]:
    """The tenant's chat user's chunks matching the raw tsquery `terms`, best ranked first.

    Each chunk carries its document's title as `document_title`.
    """
    chunks, documents = (connection.ops.quote_name(m._meta.db_table) for m in (KnowledgeChunk, KnowledgeDocument))
    vector, position = _column(KnowledgeChunk, "search_vector"), _column(KnowledgeChunk, "position")
    document, chunk_user = _column(KnowledgeChunk, "document"), _column(KnowledgeChunk, "user_id")
    title, document_pk = _column(KnowledgeDocument, "title"), _column(KnowledgeDocument, "id")
    tenant = _column(KnowledgeDocument, "created_by")
    same_tenant = f"d.{tenant} IS NULL" if tenant_id is None else f"d.{tenant} = %s"
    sql = f"""
        SELECT c.*, d.{title} AS document_title
        FROM {chunks} c JOIN {documents} d ON d.{document_pk} = c.{document}, to_tsquery(%s::regconfig, %s) query
        WHERE c.{chunk_user} = %s AND {same_tenant} AND c.{vector} @@ query
        ORDER BY ts_rank(c.{vector}, query) DESC, c.{document}, c.{position}
        LIMIT %s
    """
    params = [search_config, terms, user_id, *([] if tenant_id is None else [tenant_id]), limit]
    return list(KnowledgeChunk.objects.raw(sql, params))


# --- budgets -------------------------------------------------------------------------------------
@functools.cache
def _budget_rows_sql() -> str:
    fields, tenant = Budget._meta.concrete_fields, _column(Budget, "tenant")
    table = connection.ops.quote_name(Budget._meta.db_table)
    return f"SELECT {column_list(fields)} FROM {table} WHERE {tenant} IS NULL OR {tenant} = %s"


def budget_rows(*, tenant_id: int) -> list[Budget]:
    """Every budget row that may apply to the tenant's replies: everyone's, the tenant's and its chat users'.

    Read on every submit and every reply's start and end (a change in the admin applies at once).
    """
    with connection.cursor() as cursor:
        cursor.execute(_budget_rows_sql(), [tenant_id])
        return [loaded(Budget, Budget._meta.concrete_fields, row) for row in cursor.fetchall()]


def reservation_remove(*, task_id: str) -> None:
    """Delete the budget reservation of the AI task `task_id`, if it has one."""
    table = connection.ops.quote_name(BudgetReservation._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE {_column(BudgetReservation, 'task_id')} = %s", [task_id])


# --- reply admissions ----------------------------------------------------------------------------
@functools.cache
def _admissions_sql(*, tenant_is_null: bool) -> str:
    fields, tenant = ReplyAdmission._meta.concrete_fields, _column(ReplyAdmission, "tenant")
    table = connection.ops.quote_name(ReplyAdmission._meta.db_table)
    same_tenant = f"{tenant} IS NULL" if tenant_is_null else f"{tenant} = %s"
    return (
        f"SELECT {column_list(fields)} FROM {table} WHERE {same_tenant} AND {_column(ReplyAdmission, 'user_id')} = %s "
        f"ORDER BY {_column(ReplyAdmission, 'id')}"
    )


def admissions_of(*, tenant_id: int | None, user_id: str) -> list[ReplyAdmission]:
    """The chat user's replies in hand (admitted or waiting), oldest first."""
    tenant = [] if tenant_id is None else [tenant_id]
    with connection.cursor() as cursor:
        cursor.execute(_admissions_sql(tenant_is_null=tenant_id is None), [*tenant, user_id])
        return [loaded(ReplyAdmission, ReplyAdmission._meta.concrete_fields, row) for row in cursor.fetchall()]


def admissions_exist(*, tenant_id: int | None, user_id: str) -> bool:
    """Whether the chat user has any reply in hand (admitted or waiting)."""
    tenant = [] if tenant_id is None else [tenant_id]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT EXISTS ({_admissions_sql(tenant_is_null=tenant_id is None)})", [*tenant, user_id])
        return cursor.fetchone()[0]


def admitted_task_ids(*, tenant_id: int | None, user_id: str) -> list[str]:
    """The task ids of the chat user's admitted replies (sent, or about to be)."""
    table = connection.ops.quote_name(ReplyAdmission._meta.db_table)
    tenant, user, state, task_id = (_column(ReplyAdmission, name) for name in ("tenant", "user_id", "state", "task_id"))
    same_tenant = f"{tenant} IS NULL" if tenant_id is None else f"{tenant} = %s"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {task_id} FROM {table} WHERE {same_tenant} AND {user} = %s AND {state} = %s",
            [*([] if tenant_id is None else [tenant_id]), user_id, AdmissionState.ADMITTED],
        )
        return [row[0] for row in cursor.fetchall()]


def conversation_in_hand(*, tenant_id: int | None, user_id: str, conversation_id: str) -> bool:
    """Whether a reply of the chat user's conversation is in hand (admitted or waiting)."""
    table = connection.ops.quote_name(ReplyAdmission._meta.db_table)
    tenant, user, conversation = (_column(ReplyAdmission, name) for name in ("tenant", "user_id", "conversation_id"))
    same_tenant = f"{tenant} IS NULL" if tenant_id is None else f"{tenant} = %s"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT EXISTS (SELECT 1 FROM {table} WHERE {same_tenant} AND {user} = %s AND {conversation} = %s)",
            [*([] if tenant_id is None else [tenant_id]), user_id, conversation_id],
        )
        return cursor.fetchone()[0]


def admission_decided(row: ReplyAdmission) -> None:
    """Store the row's state, admission time and what it waits for."""
    table = connection.ops.quote_name(ReplyAdmission._meta.db_table)
    state, admitted_at, waiting_for, pk = (
        _column(ReplyAdmission, name) for name in ("state", "admitted_at", "waiting_for", "id")
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {state} = %s, {admitted_at} = %s, {waiting_for} = %s WHERE {pk} = %s",
            [row.state, row.admitted_at, row.waiting_for, row.pk],
        )


def admissions_remove(*, task_ids: list[str]) -> int:
    """Delete the admission rows of `task_ids`; how many there were."""
    table = connection.ops.quote_name(ReplyAdmission._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE {_column(ReplyAdmission, 'task_id')} = ANY(%s)", [task_ids])
        return cursor.rowcount
