"""The task status document: what GET /status answers and what a callback receives, in one shape.

The API's serializers and the webhook notifier (worker code) both use it, so a callback's body
is exactly the /status answer, and worker code needs nothing of the API layer.
"""

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from tasks_app import selectors
from tasks_app.models import TaskRecord


class TaskSummarySerializer(serializers.ModelSerializer):
    """One task in /list."""

    status = serializers.CharField(source="state", help_text=_("PENDING, STARTED, RETRY, SUCCESS, FAILURE or REVOKED."))
    retry_of = serializers.CharField(source="retry_of.task_id", allow_null=True, default=None, read_only=True)
    date_done = serializers.DateTimeField(source="done_at", allow_null=True)
    runtime = serializers.FloatField(allow_null=True, help_text=_("Seconds from start to finish."))

    class Meta:
        model = TaskRecord
        fields = [
            "task_id",
            "status",
            "task_name",
            "queue",
            "priority",
            "eta",
            "retries",
            "retry_of",
            "conversation_id",
            "user_id",
            "worker",
            "error",
            "created_at",
            "started_at",
            "date_done",
            "runtime",
        ]
        read_only_fields = fields


class TaskStatusSerializer(TaskSummarySerializer):
    """One task in full, for /status."""

    result = serializers.JSONField(allow_null=True, help_text=_("The task's return value (SUCCESS only)."))
    pending_reason = serializers.CharField(
        allow_null=True, help_text=_("Why a task is still PENDING, where the system can tell.")
    )
    # DRF's metaclass moves declared fields off the class; the stub sees BaseSerializer's `partial` flag.
    partial = serializers.CharField(  # type: ignore[assignment]
        allow_null=True,
        read_only=True,
        help_text=_("While STARTED: the text the task has written so far (an AI reply being streamed)."),
    )

    class Meta(TaskSummarySerializer.Meta):
        fields = [
            *TaskSummarySerializer.Meta.fields,
            "result",
            "args",
            "kwargs",
            "traceback",
            "pending_reason",
            "partial",
        ]
        read_only_fields = fields


def task_status_document(record: TaskRecord) -> dict:
    """Exactly what GET /api/v1/tasks/status/{id} answers for the (finished) task."""
    # Two values the serializer reads beside the record's own fields (not model fields).
    record.result = selectors.task_result_value(record=record)
    record.pending_reason = None  # callbacks are sent for finished tasks only
    return dict(TaskStatusSerializer(record).data)
