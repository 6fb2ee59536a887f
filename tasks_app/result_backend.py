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
            # One conditional UPDATE (it also locks the row against a concurrent cancel_task).
            updated = self._update_record(task_id, result, status, traceback, request)
            if not updated and status != states.REVOKED and self._revoked(task_id):
                # Cancelled through the system: this worker had not heard yet. Drop the write, and
                # tell ClawTask (same request context) not to run the task.
                if request is not None:
                    request.claw_cancelled = True
                return result
            stored = super()._store_result(task_id, result, status, traceback=traceback, request=request, using=using)
        if request is not None and status == states.STARTED:
            request.claw_record_checked = True  # ClawTask needs no query of its own
        return stored

    @staticmethod
    def _revoked(task_id: str) -> bool:
        return TaskRecord.objects.filter(task_id=task_id, state=TaskState.REVOKED).exists()

    @staticmethod
    def _update_record(task_id: str, result, status: str, traceback, request) -> int:
        """Write the new state onto the record (unless it is REVOKED); the number of rows updated."""
        now = timezone.now()
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
        records = TaskRecord.objects.filter(task_id=task_id)
        if status != states.REVOKED:
            records = records.exclude(state=TaskState.REVOKED)
        return records.update(**fields) if fields else records.count()
