"""django-celery-results' database backend, keeping the task record in step.

TaskRecord.state is the source of truth for a task's state. Each result a worker
writes updates the TaskRecord and django-celery-results' TaskResult in one SQL
statement (one round trip, one commit), so the API, the admin and the stats never
see them disagree. A record cancelled through the system stays REVOKED: later
writes from a worker that had not yet heard are dropped.
"""

import functools

from celery import states
from django.db import InterfaceError as DjangoInterfaceError
from django.db import OperationalError, connection
from django.utils import timezone
from django_celery_results.backends.database import DatabaseBackend
from django_celery_results.models import TaskResult
from psycopg import OperationalError as PsycopgOperationalError

from claw_ai.inserts import column_of
from tasks_app.models import FINISHED_STATES, TaskRecord, TaskState

TRANSIENT_DATABASE_ERRORS = (OperationalError, DjangoInterfaceError, PsycopgOperationalError)

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


def describe_error(result) -> str:
    """'ValueError: bad input' from the stored form of an exception."""
    if isinstance(result, dict) and "exc_type" in result:
        message = result.get("exc_message")
        if isinstance(message, (list, tuple)):
            message = " ".join(str(part) for part in message)
        return f"{result['exc_type']}: {message}" if message else str(result["exc_type"])
    return str(result)


@functools.cache  # a handful of shapes (which record fields a state sets), built once each
def _write_state_sql(record_fields: tuple[str, ...], *, protected: tuple[str, ...]) -> str:
    """UPDATE the record and upsert the TaskResult in one statement; a row comes back when written.

    The TaskResult is written when the record was updated, or when there is no record (a task
    published outside the system), but never over a record or TaskResult in one of the
    `protected` states (_protected_from). The REVOKED guard also covers a cancel committed while
    this statement waited for the record's row lock: the UPDATE then skips the now REVOKED
    record, and the upsert finds the REVOKED TaskResult the cancel wrote.
    """
    record = TaskRecord._meta
    columns = {name: column_of(TaskRecord, name) for name in record_fields}
    sets = ", ".join(f"{column} = %(record_{name})s" for name, column in columns.items())
    revoked = f"'{TaskState.REVOKED}'"
    kept = ", ".join(f"'{state}'" for state in protected)
    not_revoked = f" AND state NOT IN ({kept})" if protected else ""
    if sets:
        update = f"UPDATE {record.db_table} SET {sets} WHERE task_id = %(task_id)s{not_revoked} RETURNING 1"
    else:  # a custom state (update_state): nothing of the record changes
        update = f"SELECT 1 FROM {record.db_table} WHERE task_id = %(task_id)s{not_revoked}"
    insert_columns = ", ".join(("task_id", *RESULT_COLUMNS, "date_created", "date_done", "date_started"))
    values = ", ".join(f"%({name})s" for name in ("task_id", *RESULT_COLUMNS))
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in RESULT_COLUMNS)
    sticky = f" WHERE stored.status NOT IN ({kept})" if protected else ""
    return f"""
        WITH record AS ({update})
        INSERT INTO {TaskResult._meta.db_table} AS stored ({insert_columns})
        SELECT {values}, %(now)s, %(now)s, %(date_started)s
        WHERE EXISTS (SELECT 1 FROM record)
           OR NOT EXISTS (SELECT 1 FROM {record.db_table} WHERE task_id = %(task_id)s AND state = {revoked})
        ON CONFLICT (task_id) DO UPDATE SET {updates}, date_done = EXCLUDED.date_done,
            date_started = COALESCE(EXCLUDED.date_started, stored.date_started){sticky}
        RETURNING 1
    """


def _protected_from(status: str) -> tuple[str, ...]:
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


class TaskRecordBackend(DatabaseBackend):
    def exception_safe_to_retry(self, exc) -> bool:
        # A dropped or restarted PostgreSQL connection: reconnect and write again.
        if isinstance(exc, TRANSIENT_DATABASE_ERRORS):
            connection.close()
            return True
        return super().exception_safe_to_retry(exc)

    def _store_result(self, task_id, result, status, traceback=None, request=None, using=None):
        now = timezone.now()
        record_fields = self._record_fields(result, status, traceback, request, now)
        params = self._result_fields(result, status, traceback, request)
        params.update({f"record_{name}": value for name, value in record_fields.items()})
        params.update(task_id=task_id, now=now, date_started=now if status == states.STARTED else None)
        sql = _write_state_sql(tuple(record_fields), protected=_protected_from(status))
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            written = cursor.fetchone() is not None
        if request is not None:
            if not written and status != states.RETRY:
                # Cancelled through the system: this worker had not heard yet. Tell ClawTask (same
                # request context) not to run the task.
                request.claw_cancelled = True
            elif status == states.STARTED:
                request.claw_record_checked = True  # ClawTask needs no query of its own
        return result

    def _result_fields(self, result, status, traceback, request) -> dict:
        """TaskResult's columns, encoded as django-celery-results' own _store_result encodes them."""
        content_type, content_encoding, encoded = self.encode_content(result)
        meta = {**self._get_meta_from_request(request), "children": self.current_task_children(request)}
        fields = {
            "status": status,
            "content_type": content_type,
            "content_encoding": content_encoding,
            "result": encoded,
            "traceback": traceback,
            "meta": self.encode_content(meta)[2],
        }
        fields.update(self._get_extended_properties(request, traceback))
        return {column: fields.get(column) for column in RESULT_COLUMNS}

    @staticmethod
    def _record_fields(result, status: str, traceback, request, now) -> dict:
        """The record's fields this state sets."""
        fields: dict = {}
        if status in TaskState.values:
            fields["state"] = status
        hostname = getattr(request, "hostname", None)
        if hostname:
            fields["worker"] = hostname
        if status == states.STARTED:
            fields["started_at"] = now
        if status in states.READY_STATES:
            fields["done_at"] = now
        if status in (states.FAILURE, states.RETRY):
            fields["error"] = describe_error(result)
            fields["traceback"] = traceback or ""
        retries = getattr(request, "retries", None)
        if retries is not None:
            fields["retries"] = retries
        return fields
