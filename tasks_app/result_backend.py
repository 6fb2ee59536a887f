"""django-celery-results' database backend, keeping the task record in step.

TaskRecord.state is the source of truth for a task's state. Each result a worker
writes updates TaskResult and the TaskRecord in one transaction, so the API, the
admin and the stats never see them disagree. A record cancelled through the
system stays REVOKED: later writes from a worker that had not yet heard are dropped.
"""

from celery import states
from django.db import InterfaceError as DjangoInterfaceError
from django.db import OperationalError, connection, transaction
from django.utils import timezone
from django_celery_results.backends.database import DatabaseBackend
from psycopg import OperationalError as PsycopgOperationalError

from tasks_app.models import TaskRecord, TaskState

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

    def _store_result(self, task_id, result, status, traceback=None, request=None, using=None):
        with transaction.atomic():
            record = TaskRecord.objects.select_for_update().filter(task_id=task_id).first()
            if record is not None and record.state == TaskState.REVOKED and status != states.REVOKED:
                return result
            stored = super()._store_result(task_id, result, status, traceback=traceback, request=request, using=using)
            if record is not None:
                self._update_record(record, result, status, traceback, request)
        return stored

    @staticmethod
    def _update_record(record: TaskRecord, result, status: str, traceback, request) -> None:
        now = timezone.now()
        record.state = status if status in TaskState.values else record.state
        changed = ["state"]
        hostname = getattr(request, "hostname", None)
        if hostname:
            record.worker, changed = hostname, [*changed, "worker"]
        if status == states.STARTED:
            record.started_at, changed = now, [*changed, "started_at"]
        if status in states.READY_STATES:
            record.done_at, changed = now, [*changed, "done_at"]
        if status in (states.FAILURE, states.RETRY):
            record.error = describe_error(result)
            record.traceback = traceback or ""
            changed += ["error", "traceback"]
        retries = getattr(request, "retries", None)
        if retries is not None:
            record.retries, changed = retries, [*changed, "retries"]
        record.save(update_fields=changed)
