"""Task base classes: what every task of the system does around its own work."""

from celery import Task
from celery.exceptions import Ignore
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction


class TransientError(Exception):
    """A failure worth retrying: the same call may well succeed later."""


# A dropped or restarted database connection is transient too: the retry runs with a fresh
# connection (Celery's Django fixup closes unusable connections before each task).
TRANSIENT_EXCEPTIONS = (TransientError, OperationalError, InterfaceError)


class ClawTask(Task):
    """The app's default task class.

    - Publishing inside a database transaction waits for the commit, so a worker
      never receives a task before the rows it needs (and its record) exist.
    - A task cancelled through the system does not run, even on a worker that
      restarted and forgot Celery's in-memory revoked set.
    """

    def apply_async(self, args=None, kwargs=None, task_id=None, *rest, **options):
        if connection.in_atomic_block:
            from celery.utils import uuid

            task_id = task_id or uuid()
            transaction.on_commit(lambda: super(ClawTask, self).apply_async(args, kwargs, task_id, *rest, **options))
            return self.AsyncResult(task_id)
        return super().apply_async(args, kwargs, task_id, *rest, **options)

    def __call__(self, *args, **kwargs):
        from tasks_app.selectors import task_is_cancelled

        request = self.request
        task_id = getattr(request, "id", None)
        if task_id and not request.called_directly:
            # The result backend's STARTED write already looked at the record (and flagged a
            # cancelled task); without task_track_started, ask the database.
            checked = getattr(request, "claw_record_checked", False)
            if getattr(request, "claw_cancelled", False) or (
                not checked and self._cancelled(task_id, task_is_cancelled)
            ):
                raise Ignore(f"task {task_id} was cancelled")
        return super().__call__(*args, **kwargs)

    @staticmethod
    def _cancelled(task_id: str, task_is_cancelled) -> bool:
        try:
            return task_is_cancelled(task_id=task_id)
        except (OperationalError, InterfaceError):
            # The connection died between tasks: reconnect once rather than fail the task.
            connection.close()
            return task_is_cancelled(task_id=task_id)


class BaseTaskWithRetry(ClawTask):
    """Retries transient failures with exponential backoff and jitter.

    Only transient errors (TransientError and its subclasses, database connection
    errors) are retried: retrying any Exception would retry bugs. A task may
    narrow or widen `autoretry_for` itself.
    """

    abstract = True
    autoretry_for: tuple[type[BaseException], ...] = TRANSIENT_EXCEPTIONS
    max_retries = settings.TASK_RETRY_MAX_RETRIES
    retry_backoff = True
    retry_backoff_max = settings.TASK_RETRY_BACKOFF_MAX
    retry_jitter = True
