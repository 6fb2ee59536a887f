"""The task record's storage: every statement that writes TaskRecord, or reads it (or TaskCount) by hand.

The rules live with their callers (who may cancel what, when a lost task is re-sent); how each
outcome is stored lives here, once: the insert at publish, the result backend's state writes,
revoke, the re-send and rescue marks, and the hand-written reads (unfinished count, retry chain,
table estimate). Column names come from the models, so renaming a field means editing the model
and its migration; the counting triggers underneath (tasks_app.record_triggers) are installed by
migrations, which is where a renamed column has to reach them.

The hand-written statements stay hand-written where bench/ANALYSIS.md (measurement 4) showed the
ORM's query compiling cost more than PostgreSQL running them: publish and the state write are one
round trip each, the counts read a few TaskCount rows.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from celery import states
from django.db import connection, connections, transaction
from django.db.models import F, Field, Model, Sum
from django.utils import timezone
from django_celery_results.models import TaskResult

from claw_ai.inserts import column_list, insert, insert_fields, insert_values, loaded, placeholders
from tasks_app.models import FINISHED_STATES, UNFINISHED_STATES, WAITING_PREFIX, TaskCount, TaskRecord, TaskState

if TYPE_CHECKING:
    from datetime import datetime


def _column(model: type[Model], name: str) -> str:
    field = model._meta.get_field(name)
    # Only concrete fields are named here; a relation's reverse side or a generic key has no column.
    assert isinstance(field, Field), f"{model.__name__}.{name} is no concrete field"
    assert field.column is not None
    return connection.ops.quote_name(field.column)


# --- insert at publish ---------------------------------------------------------------------------
# What publishing sets; a re-publish of a known id updates these and keeps the rest.
PUBLISHED_FIELDS = (
    "task_name",
    "args",
    "kwargs",
    "queue",
    "priority",
    "eta",
    "submitted_by",
    "retry_of",
    "user_id",
    "conversation_id",
    "periodic_task_name",
)


@functools.cache
def _insert_sql(rows: int = 1) -> str:
    """INSERT `rows` records, or for a re-send of a lost task (same id) update only what publishing
    sets, keeping its state, creation time and re-send count. The stored rows' id, state and
    creation time come back, in no particular order."""
    meta = TaskRecord._meta
    updated = (_column(TaskRecord, name) for name in PUBLISHED_FIELDS)
    updates = ", ".join(f"{column} = EXCLUDED.{column}" for column in updated)
    returned = column_list(meta.get_field(name) for name in ("id", "state", "created_at"))
    values = ", ".join([f"({placeholders(TaskRecord)})"] * rows)
    return (
        f"INSERT INTO {connection.ops.quote_name(meta.db_table)} ({column_list(insert_fields(TaskRecord))}) "
        f"VALUES {values} "
        f"ON CONFLICT ({_column(TaskRecord, 'task_id')}) DO UPDATE SET {updates} RETURNING {returned}"
    )


def _published(
    *,
    task_id: str,
    task_name: str,
    args: list,
    kwargs: dict,
    queue: str,
    priority: int | None = None,
    eta: datetime | None = None,
    submitted_by_id: int | None = None,
    retry_of_id: int | None = None,
    periodic_task_name: str = "",
) -> TaskRecord:
    """The unsaved record of a task being published; the chat user and conversation come from its kwargs."""
    return TaskRecord(
        task_id=task_id,
        task_name=task_name,
        args=args,
        kwargs=kwargs,
        queue=queue,
        priority=priority,
        eta=eta,
        submitted_by_id=submitted_by_id,
        retry_of_id=retry_of_id,
        user_id=str(kwargs.get("user_id") or "")[:255],
        conversation_id=str(kwargs.get("conversation_id") or "")[:255],
        periodic_task_name=(periodic_task_name or "")[:255],
    )


def insert_published(**values) -> TaskRecord:
    """Write the record of a task being published (one statement) and return it as stored.

    `values` are _published's. A record of the same id (a lost task sent again from a shell) keeps
    its state, creation time and re-send count.
    """
    record = _published(**values)
    with connection.cursor() as cursor:
        cursor.execute(_insert_sql(), insert_values(record))
        record.pk, record.state, record.created_at = cursor.fetchone()
    record._state.adding, record._state.db = False, connection.alias
    return record


# Rows per statement of a bulk insert: PostgreSQL takes at most 65,535 parameters per statement.
BULK_ROWS = 1000


def insert_published_many(many: list[dict]) -> None:
    """Write the records of many tasks being published, in one transaction (one commit).

    Each of `many` holds _published's values; a task id given twice is written once (the last).
    As insert_published, a record that exists keeps its state, creation time and re-send count.
    """
    unique = list({values["task_id"]: values for values in many}.values())
    with transaction.atomic(), connection.cursor() as cursor:
        for start in range(0, len(unique), BULK_ROWS):
            chunk = unique[start : start + BULK_ROWS]
            params = [value for values in chunk for value in insert_values(_published(**values))]
            cursor.execute(_insert_sql(len(chunk)), params)


def note_celery_retry(*, task_id: str, retries: int, eta: datetime | None) -> None:
    """Celery's own retry re-sends the same task id: the record stays, the attempt is noted."""
    TaskRecord.objects.filter(task_id=task_id).update(retries=retries, eta=eta)


def forget_unsent(*, task_id: str) -> None:
    """Delete the record of a task whose message never left: no record claims it is queued."""
    TaskRecord.objects.filter(task_id=task_id).delete()


def forget_unsent_many(task_ids: list[str]) -> None:
    """forget_unsent for many tasks, in one statement."""
    if task_ids:
        TaskRecord.objects.filter(task_id__in=task_ids).delete()


# --- state writes from the result backend --------------------------------------------------------
# TaskResult columns written from django-celery-results' own properties (content, meta, extended).
RESULT_COLUMNS = (
    "status",
    "content_type",
    "content_encoding",
    "result",
    "traceback",
    "meta",
    "task_args",
    "task_kwargs",
    "task_name",
    "worker",
    "periodic_task_name",
)


def protected_from(status: str) -> tuple[str, ...]:
    """States a write of `status` must leave as they are.

    REVOKED stays REVOKED (a cancel wins over a worker that had not heard of it). A RETRY stays
    out of a finished record: Celery re-publishes the task before the first run's RETRY is
    written, so on a busy worker the re-sent run may start and finish first.
    """
    if status == states.REVOKED:
        return ()
    if status == states.RETRY:
        return tuple(sorted(FINISHED_STATES))
    return (TaskState.REVOKED,)


def state_fields(
    status: str, *, worker: str | None, retries: int | None, error: str, traceback: str | None, now: datetime
) -> dict:
    """The record's fields a write of `status` sets."""
    fields: dict = {}
    if status in TaskState.values:
        fields["state"] = status
    if worker:
        fields["worker"] = worker
    if status == states.STARTED:
        fields["started_at"] = now
    if status in states.READY_STATES:
        fields["done_at"] = now
    if status in (states.FAILURE, states.RETRY):
        fields["error"] = error
        fields["traceback"] = traceback or ""
    if retries is not None:
        fields["retries"] = retries
    return fields


@functools.cache  # a handful of shapes (which record fields a state sets), built once each
def _write_state_sql(record_fields: tuple[str, ...], *, protected: tuple[str, ...]) -> str:
    """UPDATE the record and upsert the TaskResult in one statement; a row comes back when written.

    The TaskResult is written when the record was updated, or when there is no record (a task
    published outside the system), but never over a record or TaskResult in one of the
    `protected` states (protected_from). The REVOKED guard also covers a cancel committed while
    this statement waited for the record's row lock: the UPDATE then skips the now REVOKED
    record, and the upsert finds the REVOKED TaskResult the cancel wrote.
    """
    quote = connection.ops.quote_name
    records, results = quote(TaskRecord._meta.db_table), quote(TaskResult._meta.db_table)
    task_id, state = _column(TaskRecord, "task_id"), _column(TaskRecord, "state")
    sets = ", ".join(f"{_column(TaskRecord, name)} = %(record_{name})s" for name in record_fields)
    kept = ", ".join(f"'{value}'" for value in protected)
    not_kept = f" AND {state} NOT IN ({kept})" if protected else ""
    if sets:
        update = f"UPDATE {records} SET {sets} WHERE {task_id} = %(task_id)s{not_kept} RETURNING 1"
    else:  # a custom state (update_state): nothing of the record changes
        update = f"SELECT 1 FROM {records} WHERE {task_id} = %(task_id)s{not_kept}"
    result = {name: _column(TaskResult, name) for name in ("task_id", *RESULT_COLUMNS)}
    created, done, started = (_column(TaskResult, name) for name in ("date_created", "date_done", "date_started"))
    status = result["status"]
    insert_columns = ", ".join((*result.values(), created, done, started))
    values = ", ".join(f"%({name})s" for name in result)
    updates = ", ".join(f"{result[name]} = EXCLUDED.{result[name]}" for name in RESULT_COLUMNS)
    sticky = f" WHERE stored.{status} NOT IN ({kept})" if protected else ""
    return f"""
        WITH record AS ({update})
        INSERT INTO {results} AS stored ({insert_columns})
        SELECT {values}, %(now)s, %(now)s, %(date_started)s
        WHERE EXISTS (SELECT 1 FROM record)
           OR NOT EXISTS (SELECT 1 FROM {records} WHERE {task_id} = %(task_id)s AND {state} = '{TaskState.REVOKED}')
        ON CONFLICT ({result["task_id"]}) DO UPDATE SET {updates}, {done} = EXCLUDED.{done},
            {started} = COALESCE(EXCLUDED.{started}, stored.{started}){sticky}
        RETURNING 1
    """


def write_state(*, task_id: str, status: str, record_fields: dict, result_fields: dict, now: datetime) -> bool:
    """Write a state to the record and its TaskResult in one statement; False when it was refused.

    `record_fields` come from state_fields, `result_fields` hold RESULT_COLUMNS. A refused write
    met a protected state (protected_from): the task was cancelled, or a late RETRY met a finished
    task.
    """
    params = {name: result_fields.get(name) for name in RESULT_COLUMNS}
    params.update({f"record_{name}": value for name, value in record_fields.items()})
    params.update(task_id=task_id, now=now, date_started=now if status == states.STARTED else None)
    sql = _write_state_sql(tuple(record_fields), protected=protected_from(status))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() is not None


# --- cancel ---------------------------------------------------------------------------------------
def lock(*, pk: int) -> TaskRecord:
    """The record, locked until the caller's transaction ends. Raises TaskRecord.DoesNotExist."""
    return TaskRecord.objects.select_for_update().get(pk=pk)


def store_revoked(record: TaskRecord, *, reason: str) -> None:
    """Turn a locked record and its TaskResult REVOKED (in the caller's transaction)."""
    now = timezone.now()
    record.state, record.done_at, record.error = TaskState.REVOKED, now, reason
    record.save(update_fields=["state", "done_at", "error"])
    TaskResult.objects.update_or_create(
        task_id=record.task_id,
        defaults={"status": TaskState.REVOKED, "task_name": record.task_name, "date_done": now},
    )


def is_revoked(*, task_id: str) -> bool:
    return TaskRecord.objects.filter(task_id=task_id, state=TaskState.REVOKED).exists()


def revoked_among(task_ids: list[str]) -> set[str]:
    """Which of `task_ids` are cancelled (one query for a worker's waiting tasks)."""
    return set(
        TaskRecord.objects.filter(task_id__in=task_ids, state=TaskState.REVOKED).values_list("task_id", flat=True)
    )


def states_among(task_ids: list[str]) -> dict[str, str]:
    """The state of each of `task_ids` that has a record (one statement: an AI reply's end asks it)."""
    table = connection.ops.quote_name(TaskRecord._meta.db_table)
    task_id, state = _column(TaskRecord, "task_id"), _column(TaskRecord, "state")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {task_id}, {state} FROM {table} WHERE {task_id} = ANY(%s)", [task_ids])
        return dict(cursor.fetchall())


# --- replies waiting their turn (conversations.admission) -------------------------------------------
@functools.cache
def _waiting_record_sql() -> str:
    meta = TaskRecord._meta
    task_id, state, error = (_column(TaskRecord, name) for name in ("task_id", "state", "error"))
    return (
        f"SELECT {column_list(meta.concrete_fields)} FROM {connection.ops.quote_name(meta.db_table)} "
        f"WHERE {task_id} = %s AND {state} = %s AND {error} LIKE %s"
    )


def insert_waiting(
    *,
    task_id: str,
    task_name: str,
    kwargs: dict,
    queue: str,
    priority: int | None,
    eta: datetime | None,
    submitted_by_id: int | None,
    user_id: str,
    conversation_id: str,
    note: str,
) -> TaskRecord:
    """The PENDING record of a reply that waits its turn before it is sent; its error says what for (`note`)."""
    return insert(
        TaskRecord(
            task_id=task_id,
            task_name=task_name,
            kwargs=kwargs,
            queue=queue,
            priority=priority,
            eta=eta,
            submitted_by_id=submitted_by_id,
            user_id=user_id[:255],
            conversation_id=conversation_id[:255],
            error=f"{WAITING_PREFIX}{note}",
        )
    )


def waiting_record(*, task_id: str) -> TaskRecord | None:
    """The PENDING record of a reply still waiting its turn (its error says what for); None once sent."""
    with connection.cursor() as cursor:
        cursor.execute(_waiting_record_sql(), [task_id, TaskState.PENDING, f"{WAITING_PREFIX}%"])
        row = cursor.fetchone()
    return None if row is None else loaded(TaskRecord, TaskRecord._meta.concrete_fields, row)


def clear_waiting_note(*, pk: int, note: str) -> None:
    """The reply was sent: its record's waiting note goes (its state stays; the task may have run meanwhile)."""
    table = connection.ops.quote_name(TaskRecord._meta.db_table)
    error, record_pk = _column(TaskRecord, "error"), _column(TaskRecord, "id")
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {error} = '' WHERE {record_pk} = %s AND {error} = %s", [pk, note])


# --- re-send and rescue marks -----------------------------------------------------------------------
def claim_resend(*, pk: int, cutoff: datetime) -> TaskRecord | None:
    """Mark a lost PENDING record re-sent and return it; None when it is no longer to be re-sent.

    Re-checked under the row lock: it may have started, or another run of the job re-sent it
    since `cutoff`. Committed before the caller publishes again.
    """
    with transaction.atomic():
        record = TaskRecord.objects.select_for_update().filter(pk=pk).first()
        if record is None or record.state != TaskState.PENDING or (record.resent_at and record.resent_at >= cutoff):
            return None
        record.resent_count += 1
        record.resent_at = timezone.now()
        record.save(update_fields=["resent_count", "resent_at"])
    return record


def note_rescued(task_ids: list[str]) -> None:
    """The lifeline handed these tasks' messages back to their queues: count it as a re-send."""
    TaskRecord.objects.filter(task_id__in=task_ids).update(resent_count=F("resent_count") + 1, resent_at=timezone.now())


# --- counts and reads by hand ---------------------------------------------------------------------
def counts_by_queue_and_state(*, owner: int) -> list[tuple[str, str, int]]:
    """(queue, state, count) of `owner`'s records (TaskCount.ALL_OWNERS: every record), summed over slots."""
    return list(
        TaskCount.objects.filter(owner=owner).values_list("queue", "state").annotate(count=Sum("count")).order_by()
    )


@functools.cache
def _unfinished_count_sql() -> str:
    table = connection.ops.quote_name(TaskCount._meta.db_table)
    count, owner, state = (_column(TaskCount, name) for name in ("count", "owner", "state"))
    return f"SELECT coalesce(sum({count}), 0) FROM {table} WHERE {owner} = %s AND {state} = ANY(%s)"


def unfinished_count(*, owner: int) -> int:
    """Records of `owner` that are PENDING, STARTED or RETRY, from the trigger-kept TaskCount rows."""
    # Plain SQL: asked on every submission, and compiling the ORM's aggregate cost more than running it.
    with connection.cursor() as cursor:
        cursor.execute(_unfinished_count_sql(), [owner, sorted(UNFINISHED_STATES)])
        return cursor.fetchone()[0]


@functools.cache
def _retry_chain_sql() -> str:
    table = connection.ops.quote_name(TaskRecord._meta.db_table)
    pk, task_id, retry_of = (_column(TaskRecord, name) for name in ("id", "task_id", "retry_of"))
    return f"""
        WITH RECURSIVE chain(id, task_id, retry_of_id, depth) AS (
            SELECT {pk}, {task_id}, {retry_of}, 1 FROM {table} WHERE {pk} = %s
            UNION ALL
            SELECT r.{pk}, r.{task_id}, r.{retry_of}, c.depth + 1
            FROM {table} r JOIN chain c ON r.{pk} = c.retry_of_id WHERE c.depth < %s
        )
        SELECT task_id FROM chain ORDER BY depth
    """


def retry_chain(*, record_id: int, depth: int = 100) -> list[str]:
    """The task id of the record `record_id`, then those of the tasks it retries, nearest first."""
    with connection.cursor() as cursor:
        cursor.execute(_retry_chain_sql(), [record_id, depth])
        return [task_id for (task_id,) in cursor.fetchall()]


def estimated_rows(model: type[Model], *, using: str) -> int:
    """PostgreSQL's planner estimate of a table's rows (pg_class.reltuples); -1 when unknown.

    Kept fresh by autovacuum's ANALYZE; -1 also means "never analyzed" (count instead).
    """
    database = connections[using]
    if database.vendor != "postgresql":
        return -1
    with database.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [model._meta.db_table])
        row = cursor.fetchone()
    return int(row[0]) if row else -1
