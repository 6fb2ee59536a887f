"""Reads of task records, scoped to the caller where a caller is involved."""

from tasks_app.models import TaskRecord, TaskState


def task_is_cancelled(*, task_id: str) -> bool:
    return TaskRecord.objects.filter(task_id=task_id, state=TaskState.REVOKED).exists()
