"""django-celery-results' database backend, keeping the task record in step.

TaskRecord.state is the source of truth for a task's state. Each result a worker
writes updates the TaskRecord and django-celery-results' TaskResult in one SQL
statement (one round trip, one commit), so the API, the admin and the stats never
see them disagree. A record cancelled through the system stays REVOKED: later
writes from a worker that had not yet heard are dropped, and the STARTED write
(mark_started, which ClawTask calls) tells the task class not to run.
"""

import os
from functools import partial

from celery import states
from celery.exceptions import BackendStoreError
from django.db import InterfaceError as DjangoInterfaceError
from django.db import OperationalError, connection
from django.utils import timezone
from django_celery_results.backends.database import DatabaseBackend
from psycopg import OperationalError as PsycopgOperationalError

from tasks_app import records

TRANSIENT_DATABASE_ERRORS = (OperationalError, DjangoInterfaceError, PsycopgOperationalError)


def describe_error(result) -> str:
    """'ValueError: bad input' from the stored form of an exception."""
    if isinstance(result, dict) and "exc_type" in result:
        message = result.get("exc_message")
        if isinstance(message, (list, tuple)):
            message = " ".join(str(part) for part in message)
        return f"{result['exc_type']}: {message}" if message else str(result["exc_type"])
    return str(result)


class TaskRecordBackend(DatabaseBackend):
    def exception_safe_to_retry(self, exc) -> bool:
        # A dropped or restarted PostgreSQL connection: reconnect and write again.
        if isinstance(exc, TRANSIENT_DATABASE_ERRORS):
            connection.close()
            return True
        return super().exception_safe_to_retry(exc)

    def mark_started(self, task_id: str, *, request) -> bool:
        """Write STARTED as Celery's tracer would, and say whether the task may run.

        False when the write was refused because the task was cancelled through the system (its
        record is REVOKED) and this worker had not heard: ClawTask then does not run it. Retried
        on transient database errors like every write of the backend.
        """
        meta = {"pid": os.getpid(), "hostname": getattr(request, "hostname", None)}
        return self._ensure_retryable(
            self._write,
            task_id,
            self.encode_result(meta, states.STARTED),
            states.STARTED,
            None,
            request,
            # celery-types declares BackendStoreError without the task_id and state keywords Celery reads.
            fallback_exc=partial(BackendStoreError, task_id=task_id, state=states.STARTED),  # type: ignore[call-arg]
            fallback_msg="failed to store result on the backend",
        )

    def _store_result(self, task_id, result, status, traceback=None, request=None, using=None):
        self._write(task_id, result, status, traceback, request)
        return result

    def _write(self, task_id, result, status, traceback, request) -> bool:
        """One state write of the record and its TaskResult; False when it was refused (records.write_state)."""
        now = timezone.now()
        error = describe_error(result) if status in (states.FAILURE, states.RETRY) else ""
        record_fields = records.state_fields(
            status,
            worker=getattr(request, "hostname", None),
            retries=getattr(request, "retries", None),
            error=error,
            traceback=traceback,
            now=now,
        )
        return records.write_state(
            task_id=task_id,
            status=status,
            record_fields=record_fields,
            result_fields=self._result_fields(result, status, traceback, request),
            now=now,
        )

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
        return {column: fields.get(column) for column in records.RESULT_COLUMNS}
