"""Input and output shapes of the task endpoints (the OpenAPI schema is built from these)."""

from django.core.validators import URLValidator
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from tasks_app.callback_addresses import refused_host
from tasks_app.models import TaskState
from tasks_app.selectors import STATE_KEYS
from tasks_app.task_documents import TaskStatusSerializer, TaskSummarySerializer

LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX = 50, 500


# --- task records ------------------------------------------------------------------------------
# The task documents are shared with the callback notifier (tasks_app.task_documents).
__all__ = ["TaskStatusSerializer", "TaskSummarySerializer"]


class TaskListQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=TaskState.choices, required=False)
    queue = serializers.CharField(required=False, max_length=100)
    task_name = serializers.CharField(required=False, max_length=255)
    conversation_id = serializers.CharField(required=False, max_length=255)
    user_id = serializers.CharField(required=False, max_length=255, help_text=_("The chat user's id."))
    created_after = serializers.DateTimeField(required=False, help_text=_("Created at or after (ISO 8601)."))
    created_before = serializers.DateTimeField(required=False, help_text=_("Created before (ISO 8601)."))
    limit = serializers.IntegerField(
        required=False,
        default=LIST_LIMIT_DEFAULT,
        min_value=1,
        help_text=_("Page size, %(max)d at most (larger values are lowered to it).") % {"max": LIST_LIMIT_MAX},
    )
    cursor = serializers.CharField(required=False, help_text=_("Opaque cursor from `next` or `previous`."))

    def validate_limit(self, value: int) -> int:
        return min(value, LIST_LIMIT_MAX)


class TaskPageSerializer(serializers.Serializer):
    results = TaskSummarySerializer(many=True)
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)


def _counts_per_state(total: str) -> dict[str, serializers.Field]:
    """A total, then one count per TaskState, named as tasks_app.selectors.task_stats names them."""
    return {total: serializers.IntegerField(), **{key: serializers.IntegerField() for key in STATE_KEYS.values()}}


QueueCountsSerializer = type("QueueCountsSerializer", (serializers.Serializer,), _counts_per_state("total"))


# A base made by type(): its fields are generated from TaskState, which mypy cannot follow.
class TaskStatsSerializer(type("TaskCountsSerializer", (serializers.Serializer,), _counts_per_state("total_tasks"))):  # type: ignore[misc]
    workers = serializers.IntegerField(
        allow_null=True,
        help_text=_(
            "Live workers as of workers_checked_at; null only when they could not be discovered (the broker is down)."
        ),
    )
    workers_checked_at = serializers.DateTimeField(
        allow_null=True,
        help_text=_(
            "When the live workers were last discovered. Discovery is refreshed in the background "
            "(every WORKER_DISCOVERY_CACHE_SECONDS while asked for), so /stats never waits for it."
        ),
    )
    queues = serializers.DictField(child=QueueCountsSerializer(), help_text=_("Counts by queue name."))
    disabled_safety_jobs = serializers.ListField(
        child=serializers.CharField(),
        help_text=_(
            "The lifeline and re-send periodic jobs that are disabled or deleted: while one is listed, tasks "
            "of a dead worker node or lost by the broker are not recovered. Empty when all is well."
        ),
    )


# --- actions -----------------------------------------------------------------------------------
class EmptySerializer(serializers.Serializer):
    """No input (the browsable API shows a bare POST form)."""


class TaskAcceptedSerializer(serializers.Serializer):
    task_id = serializers.CharField()
    status = serializers.CharField(help_text=_("Always PENDING."))
    message = serializers.CharField()


class TaskRetryAcceptedSerializer(TaskAcceptedSerializer):
    retry_of = serializers.CharField(help_text=_("The task that was retried."))


class TaskCancelledSerializer(serializers.Serializer):
    task_id = serializers.CharField()
    status = serializers.CharField(help_text=_("Always REVOKED."))
    message = serializers.CharField()


class HttpUrlField(serializers.URLField):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.validators = [v for v in self.validators if not isinstance(v, URLValidator)]
        self.validators.append(URLValidator(schemes=["http", "https"], message=_("Enter an http or https URL.")))


@extend_schema_field(OpenApiTypes.URI)
class CallbackUrlField(HttpUrlField):
    """An http(s) URL whose host may be a callback's (a name is checked again when it is sent)."""

    def to_internal_value(self, data):
        url = super().to_internal_value(data)
        host = refused_host(url)
        if host:
            raise serializers.ValidationError(
                _("Callbacks go to public addresses only; %(host)s is not one.") % {"host": host}
            )
        return url


# --- workers -----------------------------------------------------------------------------------
class WorkerTaskSerializer(serializers.Serializer):
    task_id = serializers.CharField(allow_null=True)
    task_name = serializers.CharField(allow_null=True)
    started = serializers.FloatField(allow_null=True, help_text=_("Unix time the task started, when running."))


class WorkerSerializer(serializers.Serializer):
    name = serializers.CharField()
    pool = serializers.CharField(allow_null=True, help_text=_("prefork, threads, solo, gevent or eventlet."))
    concurrency = serializers.IntegerField(allow_null=True)
    queues = serializers.ListField(child=serializers.CharField(), allow_null=True)
    active = WorkerTaskSerializer(many=True, allow_null=True)
    reserved = WorkerTaskSerializer(many=True, allow_null=True)
    processed = serializers.DictField(child=serializers.IntegerField(), help_text=_("Tasks run, by task name."))
    processed_total = serializers.IntegerField()
    uptime = serializers.IntegerField(allow_null=True, help_text=_("Seconds."))
    complete = serializers.BooleanField(help_text=_("False when the worker missed some of the inspect calls."))


class WorkerListSerializer(serializers.Serializer):
    workers = WorkerSerializer(many=True)
    not_replying = serializers.ListField(
        child=serializers.CharField(), help_text=_("Workers seen recently that did not reply in time.")
    )


class PoolRestartSerializer(serializers.Serializer):
    destination = serializers.ListField(
        child=serializers.CharField(max_length=255),
        required=False,
        allow_empty=False,
        max_length=100,
        help_text=_("Worker names; all workers when left out."),
    )


class ShutdownSerializer(PoolRestartSerializer):
    all = serializers.BooleanField(required=False, default=False, help_text=_("Shut down every worker."))

    def validate(self, attrs):
        if not attrs.get("destination") and not attrs.get("all"):
            raise serializers.ValidationError(
                {"destination": [_('Name the workers to shut down, or send "all": true.')]}
            )
        if attrs.get("destination") and attrs.get("all"):
            raise serializers.ValidationError({"all": [_('Give destination or "all", not both.')]})
        return attrs


class ControlResultSerializer(serializers.Serializer):
    worker = serializers.CharField()
    ok = serializers.BooleanField()
    message = serializers.CharField()


class ControlReportSerializer(serializers.Serializer):
    results = ControlResultSerializer(many=True)
    not_replying = serializers.ListField(child=serializers.CharField())
