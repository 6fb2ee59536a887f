"""Task base classes: what every task of the system does around its own work."""

from typing import TYPE_CHECKING, cast

from celery import Task
from celery.app.task import get_actual_ignore_result  # type: ignore[attr-defined]  # missing from celery-types
from celery.exceptions import Ignore
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

if TYPE_CHECKING:
    from tasks_app.result_backend import TaskRecordBackend


class TransientError(Exception):
    """A failure worth retrying: the same call may well succeed later."""


# A dropped or restarted database connection is transient too: the retry runs with a fresh
# connection (Celery's Django fixup closes unusable connections before each task).
TRANSIENT_EXCEPTIONS = (TransientError, OperationalError, InterfaceError)


class ClawTask(Task):
    """The app's default task class.

    - It leaves through tasks_app.publishing, which writes its record and holds a message
      sent inside a database transaction until the commit.
    - A task cancelled through the system does not run, even on a worker that
      restarted and forgot Celery's in-memory revoked set.
    """

    def apply_async(self, args=None, kwargs=None, task_id=None, *rest, **options):
        from tasks_app import publishing  # not at import: Celery loads this class before Django's models

        def send(args, kwargs, task_id, **options):
            return super(ClawTask, self).apply_async(args, kwargs, task_id, *rest, **options)

        return publishing.apply_async(self, args, kwargs, task_id, options, send)

    # A task that watches for its own cancellation while it runs (tasks_app.cancellation) and
    # ends cleanly, keeping what it did, says so: a cancel then leaves it to stop itself instead of
    # terminating its process on a prefork worker (which would lose what it had done).
    stops_itself_when_cancelled = False

    # ClawTask writes STARTED itself (task_track_started), in __call__ rather than in Celery's
    # tracer: the write is also the check for a cancellation (see _may_run).
    track_started = False

    def __call__(self, *args, **kwargs):
        request = self.request
        task_id = getattr(request, "id", None)
        if task_id and not request.called_directly and not self._may_run(task_id):
            raise Ignore(f"task {task_id} was cancelled")
        return super().__call__(*args, **kwargs)

    def _may_run(self, task_id: str) -> bool:
        """Whether the task may run: not if it was cancelled through the system (its record is REVOKED).

        With task_track_started, the result backend's STARTED write answers it (the write is refused
        on a REVOKED record): one statement for both. Without (or run eagerly), the record is asked.
        """
        request = self.request
        if self.app.conf.task_track_started and not request.is_eager and not get_actual_ignore_result(self, request):
            backend = cast("TaskRecordBackend", self.backend)  # CELERY_RESULT_BACKEND
            return backend.mark_started(task_id, request=request)
        from tasks_app import records  # not at import: Celery loads this class before Django's models

        try:
            return not records.is_revoked(task_id=task_id)
        except (OperationalError, InterfaceError):
            # The connection died between tasks: reconnect once rather than fail the task.
            connection.close()
            return not records.is_revoked(task_id=task_id)


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
