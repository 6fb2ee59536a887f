"""The task endpoints (/api/v1/tasks/...): thin views over tasks_app.selectors, services and workers."""

from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, cast

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from claw_ai.errors import Conflict, ErrorSerializer, ServiceUnavailable
from claw_ai.throttles import WriteRateThrottle
from tasks_app import selectors, services, task_progress, workers
from tasks_app.api import serializers as s
from tasks_app.api.errors import too_many_tasks
from tasks_app.api.permissions import CanControlWorkers
from tasks_app.api.representations import Representation
from tasks_app.models import MANAGE_ALL_TASKS, TaskRecord, TaskState
from tasks_app.schedules import safety_jobs_off

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractUser

TASK_ID_PATTERN = r"[^/]+"
# The read endpoints' answers, from serializers built once per process (tasks_app.api.representations).
STATUS, SUMMARY, STATS = (
    Representation(s.TaskStatusSerializer),
    Representation(s.TaskSummarySerializer),
    Representation(s.TaskStatsSerializer),
)


def errors(*codes: int) -> dict:
    descriptions = {
        400: "Invalid input (field errors).",
        401: "Not authenticated.",
        403: "Not allowed: worker control needs tasks_app.control_workers; cancelling or retrying another "
        "tenant's task needs tasks_app.manage_all_tasks.",
        404: "No such task (or not yours).",
        409: "The task's state forbids this.",
        429: "Too many requests (code `throttled`, with a Retry-After header in seconds) or too many "
        "unfinished tasks of the caller (code `too_many_unfinished_tasks`): try again later.",
        503: "The broker cannot be reached; nothing was queued.",
    }
    return {code: OpenApiResponse(ErrorSerializer, description=descriptions[code]) for code in codes}


class TaskCursorPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    cursor_query_param = "cursor"
    page_size_query_param = None  # the limit is validated by TaskListQuerySerializer

    def decode_cursor(self, request):
        # A cursor is opaque but client-held: its position must be a datetime, or the query would fail.
        cursor = super().decode_cursor(request)
        # djangorestframework-stubs types Cursor.position as int; decode_cursor gives the query's text.
        position = cursor.position if cursor is not None else None
        if position is not None and parse_datetime(position) is None:  # type: ignore[arg-type]
            raise NotFound(self.invalid_cursor_message)
        return cursor


class TaskApiViewSet(viewsets.GenericViewSet):
    """Shared by the task and worker viewsets."""

    serializer_classes: ClassVar[dict[str, type[BaseSerializer]]]  # per action, set by each viewset

    def get_serializer_class(self):
        return self.serializer_classes.get(self.action, s.EmptySerializer)

    def validated(self, data) -> dict:
        serializer = self.get_serializer(data=data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def task_or_404(self, task_id: str) -> TaskRecord:
        try:
            # The viewsets require authentication: never the anonymous user.
            return selectors.task_for_user(user=cast("AbstractUser", self.request.user), task_id=task_id)
        except TaskRecord.DoesNotExist:
            raise NotFound(_("No task %(task_id)s.") % {"task_id": task_id[:255]}) from None

    def task_to_act_on(self, task_id: str) -> TaskRecord:
        """task_or_404, and 403 for another tenant's task unless the caller may manage every task."""
        record = self.task_or_404(task_id)
        if record.submitted_by_id != self.request.user.pk and not self.request.user.has_perm(MANAGE_ALL_TASKS):
            raise PermissionDenied(
                _("This task is another user's: cancelling or retrying it needs the permission %(permission)s.")
                % {"permission": MANAGE_ALL_TASKS}
            )
        return record


class TaskViewSet(TaskApiViewSet):
    """Submit, watch, cancel and retry tasks: your own (every user's with the tasks_app.*_all_tasks permissions)."""

    permission_classes = [permissions.IsAuthenticated]
    throttle_classes = [WriteRateThrottle]
    throttle_scopes = {"retry": "task_retry", "cancel": "task_cancel"}
    serializer_classes = {
        "task_status": s.TaskStatusSerializer,
        "task_list": s.TaskListQuerySerializer,
        "cancel": s.EmptySerializer,
        "retry": s.EmptySerializer,
    }

    @extend_schema(summary="One task's state", responses={200: s.TaskStatusSerializer, **errors(401, 404)})
    @action(detail=False, methods=["get"], url_path=rf"status/(?P<task_id>{TASK_ID_PATTERN})")
    def task_status(self, request, task_id: str):
        record = self.task_or_404(task_id)
        record.result = selectors.task_result_value(record=record)
        record.pending_reason = selectors.pending_reason(record=record)
        if record.state == TaskState.STARTED:
            record.partial = task_progress.partial_text(task_id=record.task_id)
        return Response(STATUS.one(record))

    @extend_schema(
        summary="Tasks, newest first",
        parameters=[s.TaskListQuerySerializer],
        responses={200: s.TaskPageSerializer, **errors(400, 401)},
    )
    @action(detail=False, methods=["get"], url_path="list")
    def task_list(self, request):
        query = self.validated(request.query_params)
        limit = query.pop("limit")
        query.pop("cursor", None)
        paginator = TaskCursorPagination()
        paginator.page_size = limit
        try:
            page = paginator.paginate_queryset(selectors.task_list(user=request.user, **query), request, view=self)
        except NotFound:
            raise ValidationError({"cursor": [_("Invalid cursor.")]}) from None
        return Response(
            {
                "results": SUMMARY.many(page),
                "next": paginator.get_next_link(),
                "previous": paginator.get_previous_link(),
            }
        )

    @extend_schema(
        summary="Counts by state and queue, and live workers", responses={200: s.TaskStatsSerializer, **errors(401)}
    )
    @action(detail=False, methods=["get"], url_path="stats")
    def stats(self, request):
        counts = selectors.task_stats(user=request.user)
        live = workers.live_workers(wait_when_unknown=True)
        counts["workers"] = len(live.queues) if live.known else None
        counts["workers_checked_at"] = (
            datetime.fromtimestamp(live.checked_at, tz=timezone.get_current_timezone())
            if live.checked_at is not None
            else None
        )
        counts["disabled_safety_jobs"] = safety_jobs_off()
        return Response(STATS.one(counts))

    @extend_schema(
        summary="Cancel a queued, delayed or running task",
        request=None,
        responses={200: s.TaskCancelledSerializer, **errors(401, 403, 404, 409, 429)},
    )
    @action(detail=False, methods=["post"], url_path=rf"cancel/(?P<task_id>{TASK_ID_PATTERN})")
    def cancel(self, request, task_id: str):
        record = self.task_to_act_on(task_id)
        try:
            record = services.cancel_task(record=record, by=request.user)
        except services.TaskStateConflict as conflict:
            raise Conflict(
                _("Task %(task_id)s is %(state)s: only a pending or running task can be cancelled.")
                % {"task_id": task_id, "state": conflict.record.state}
            ) from None
        body = {"task_id": record.task_id, "status": record.state, "message": _("Task cancelled")}
        return Response(s.TaskCancelledSerializer(body).data)

    @extend_schema(
        summary="Run a failed or cancelled task again",
        description="202 with the new task; 200 with the earlier retry when one is still pending or running "
        "(retrying twice does not run the task twice).",
        request=None,
        responses={
            202: s.TaskRetryAcceptedSerializer,
            200: s.TaskRetryAcceptedSerializer,
            **errors(400, 401, 403, 404, 409, 429, 503),
        },
    )
    @action(detail=False, methods=["post"], url_path=rf"retry/(?P<task_id>{TASK_ID_PATTERN})")
    def retry(self, request, task_id: str):
        record = self.task_to_act_on(task_id)
        try:
            again, is_new = services.retry_task(record=record, by=request.user)
        except services.UnknownTaskName:
            raise ValidationError(
                {"task_id": [_("No worker of this system runs tasks named %(name)s.") % {"name": record.task_name}]}
            ) from None
        except services.TaskStateConflict as conflict:
            raise Conflict(
                _("Task %(task_id)s is %(state)s: only a failed or cancelled task can be retried.")
                % {"task_id": task_id, "state": conflict.record.state}
            ) from None
        except services.TooManyUnfinishedTasks as refused:
            raise too_many_tasks(refused) from None
        except services.BrokerUnavailable:
            raise ServiceUnavailable(_("The task broker cannot be reached; nothing was queued. Try again.")) from None
        body = {
            "task_id": again.task_id,
            "status": again.state,
            "retry_of": record.task_id,
            "message": _("Task retry submitted") if is_new else _("The task's earlier retry is still pending"),
        }
        code = status.HTTP_202_ACCEPTED if is_new else status.HTTP_200_OK
        return Response(s.TaskRetryAcceptedSerializer(body).data, status=code)


class SingleObjectSchema(AutoSchema):
    """GET /workers answers one report object, not a list of them."""

    def _is_list_view(self, serializer=None) -> bool:
        return False


class WorkerViewSet(TaskApiViewSet):
    """Live Celery workers: inspect them, restart their pools, shut them down (tasks_app.control_workers)."""

    schema = SingleObjectSchema()

    permission_classes = [permissions.IsAuthenticated, CanControlWorkers]
    throttle_classes = [WriteRateThrottle]
    throttle_scopes = {"pool_restart": "worker_control", "shutdown": "worker_control"}
    serializer_classes = {
        "list": s.EmptySerializer,
        "pool_restart": s.PoolRestartSerializer,
        "shutdown": s.ShutdownSerializer,
    }

    @extend_schema(summary="Live workers and what they do", responses={200: s.WorkerListSerializer, **errors(401, 403)})
    def list(self, request):
        report = workers.inspect_workers()
        return Response(s.WorkerListSerializer(report).data)

    @extend_schema(
        summary="Restart workers' process pools",
        request=s.PoolRestartSerializer,
        responses={200: s.ControlReportSerializer, **errors(400, 401, 403, 404, 409)},
        description="409 when no addressed worker can restart its pool (not prefork, or worker_pool_restarts off); "
        "404 when no addressed worker replied.",
    )
    @action(detail=False, methods=["post"], url_path="pool/restart")
    def pool_restart(self, request):
        data = self.validated(request.data)
        try:
            report = workers.restart_pools(destination=data.get("destination"), requested_by=request.user)
        except workers.NoWorkerReplied as silent:
            raise NotFound(_("No worker replied: %(names)s") % {"names": str(silent) or _("none live")}) from None
        if not report.any_ok:
            raise Conflict("; ".join(f"{r['worker']}: {r['message']}" for r in report.results))
        return Response(s.ControlReportSerializer(report).data)

    @extend_schema(
        summary="Shut workers down",
        request=s.ShutdownSerializer,
        responses={200: s.ControlReportSerializer, **errors(400, 401, 403, 404)},
    )
    @action(detail=False, methods=["post"], url_path="shutdown")
    def shutdown(self, request):
        data = self.validated(request.data)
        destination = None if data.get("all") else data["destination"]
        try:
            report = workers.shutdown_workers(destination=destination, requested_by=request.user)
        except workers.NoWorkerReplied as silent:
            raise NotFound(_("No worker replied: %(names)s") % {"names": str(silent) or _("none live")}) from None
        return Response(s.ControlReportSerializer(report).data)
