"""The task record: every task the system sends, from the moment it is published.

django-celery-results stores a row only once a worker touches a task, and keeps
args as truncated reprs. A TaskRecord is written when the task is published
(tasks_app.recording) and kept in step with django-celery-results' TaskResult
by the result backend (tasks_app.result_backend), in the same transaction.
"""

from typing import Any

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class TaskState(models.TextChoices):
    PENDING = "PENDING", _("Pending")
    STARTED = "STARTED", _("Started")
    RETRY = "RETRY", _("Retry")
    SUCCESS = "SUCCESS", _("Success")
    FAILURE = "FAILURE", _("Failure")
    REVOKED = "REVOKED", _("Revoked")


# A record in one of these states will not change again (a retry is a new record).
FINISHED_STATES = frozenset({TaskState.SUCCESS, TaskState.FAILURE, TaskState.REVOKED})
# States a worker may still be working towards.
UNFINISHED_STATES = frozenset({TaskState.PENDING, TaskState.STARTED, TaskState.RETRY})
# The `error` of a PENDING record held back before publishing says what it waits for, after this
# prefix (e.g. "waiting: user_concurrency", conversations.admission): it is not lost, only not sent yet.
WAITING_PREFIX = "waiting: "


# Named permissions of the task API, granted in the admin (to a group, or to a user).
VIEW_ALL_TASKS = "tasks_app.view_all_tasks"
MANAGE_ALL_TASKS = "tasks_app.manage_all_tasks"
CONTROL_WORKERS = "tasks_app.control_workers"


class TaskRecordQuerySet(models.QuerySet):
    def unfinished(self):
        return self.filter(state__in=UNFINISHED_STATES)

    def finished(self):
        return self.filter(state__in=FINISHED_STATES)

    def visible_to(self, user):
        """The tasks the caller submitted; every task with tasks_app.view_all_tasks (is_staff alone is not enough)."""
        if user.has_perm(VIEW_ALL_TASKS):
            return self
        return self.filter(submitted_by=user)


class TaskRecord(models.Model):
    task_id = models.CharField(_("task id"), max_length=255, unique=True, help_text=_("Celery task id."))
    task_name = models.CharField(_("task name"), max_length=255, help_text=_("Registered Celery task name."))
    args = models.JSONField(_("args"), default=list, blank=True, help_text=_("Positional arguments, whole."))
    kwargs = models.JSONField(_("kwargs"), default=dict, blank=True, help_text=_("Keyword arguments, whole."))
    queue = models.CharField(_("queue"), max_length=100, help_text=_("Queue the task was published to."))
    priority = models.PositiveSmallIntegerField(_("priority"), null=True, blank=True, help_text=_("0-9, 9 highest."))
    eta = models.DateTimeField(_("eta"), null=True, blank=True, help_text=_("Earliest time the task may run."))
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("submitted by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="task_records",
        help_text=_("API user who submitted the task; empty for tasks sent from code or by beat."),
    )
    user_id = models.CharField(
        _("chat user id"),
        max_length=255,
        blank=True,
        default="",
        help_text=_("The chat product's user the task works for, when it has one."),
    )
    conversation_id = models.CharField(
        _("conversation id"),
        max_length=255,
        blank=True,
        default="",
        help_text=_("Public id of the conversation the task belongs to, when it has one."),
    )
    periodic_task_name = models.CharField(
        _("periodic task"),
        max_length=255,
        blank=True,
        default="",
        help_text=_("Name of the beat schedule that sent the task."),
    )
    retry_of = models.ForeignKey(
        "self",
        verbose_name=_("retry of"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="retried_by",
        help_text=_("The task this one re-runs."),
    )
    state = models.CharField(_("state"), max_length=20, choices=TaskState.choices, default=TaskState.PENDING)
    worker = models.CharField(_("worker"), max_length=255, blank=True, default="", help_text=_("Worker node name."))
    retries = models.PositiveIntegerField(_("retries"), default=0, help_text=_("Celery retries so far."))
    error = models.TextField(_("error"), blank=True, default="", help_text=_("Exception type and message."))
    traceback = models.TextField(_("traceback"), blank=True, default="")
    created_at = models.DateTimeField(_("created"), auto_now_add=True, help_text=_("When the task was published."))
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    done_at = models.DateTimeField(_("done"), null=True, blank=True, help_text=_("When the task finished."))
    resent_count = models.PositiveIntegerField(
        _("re-sent"),
        default=0,
        help_text=_("Times the message was re-sent after the broker lost it."),
    )
    resent_at = models.DateTimeField(_("last re-sent"), null=True, blank=True)

    objects = TaskRecordQuerySet.as_manager()

    # Not stored: what the task status document (tasks_app.task_documents, GET /status) and the chat
    # API attach to a record for their serializers.
    result: Any
    pending_reason: str | None
    partial: str | None
    superseded_task_ids: list[str]

    class Meta:
        verbose_name = _("task record")
        verbose_name_plural = _("task records")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="taskrec_created_idx"),
            models.Index(fields=["state", "-created_at"], name="taskrec_state_created_idx"),
            models.Index(fields=["queue", "-created_at"], name="taskrec_queue_created_idx"),
            models.Index(fields=["task_name", "-created_at"], name="taskrec_name_created_idx"),
            models.Index(fields=["conversation_id", "-created_at"], name="taskrec_conv_created_idx"),
            models.Index(fields=["user_id", "-created_at"], name="taskrec_user_created_idx"),
            models.Index(fields=["submitted_by", "-created_at"], name="taskrec_owner_created_idx"),
            models.Index(fields=["submitted_by", "state", "-created_at"], name="taskrec_owner_state_idx"),
            models.Index(fields=["state", "queue", "-created_at"], name="taskrec_state_queue_idx2"),
            models.Index(fields=["done_at"], name="taskrec_done_idx"),
        ]
        permissions = [
            ("view_all_tasks", _("Can see every tenant's tasks in the API")),
            ("manage_all_tasks", _("Can cancel and retry every tenant's tasks in the API")),
            ("control_workers", _("Can inspect, restart and shut down workers")),
        ]

    def __str__(self) -> str:
        return f"{self.task_name} {self.task_id} [{self.state}]"

    @property
    def is_finished(self) -> bool:
        return self.state in FINISHED_STATES

    @property
    def runtime(self) -> float | None:
        """Seconds from start to finish, once both are known."""
        if self.started_at and self.done_at:
            return round((self.done_at - self.started_at).total_seconds(), 3)
        return None


class TaskCount(models.Model):
    """Task records by queue and state, kept by PostgreSQL triggers for a /stats without COUNT(*).

    Every statement that inserts, deletes or changes the state, queue or owner of task records
    adds its grouped +/- deltas (migration 0003): once under owner ALL_OWNERS, spread over a few
    slots so concurrent writers rarely wait on one row, and once under the submitting user's id
    (spread over the slots too since migration 0005). A count is the sum over slots.
    """

    ALL_OWNERS = -1

    owner = models.BigIntegerField(
        _("owner"), default=ALL_OWNERS, help_text=_("Submitting user's id; -1 counts every task.")
    )
    queue = models.CharField(_("queue"), max_length=100)
    state = models.CharField(_("state"), max_length=20, choices=TaskState.choices)
    slot = models.PositiveSmallIntegerField(_("slot"))
    count = models.BigIntegerField(_("count"), default=0)

    class Meta:
        verbose_name = _("task count")
        verbose_name_plural = _("task counts")
        constraints = [
            models.UniqueConstraint(fields=["owner", "queue", "state", "slot"], name="taskcount_owner_unique_slot")
        ]

    def __str__(self) -> str:
        return f"{self.owner} {self.queue} {self.state}: {self.count}"


class WorkerControlEvent(models.Model):
    """One worker-control call (pool restart, shutdown) through the API: who asked, whom, what came of it.

    The workers log the same request with the user's name (tasks_app.worker_audit), so a worker
    that stopped says in its own log who stopped it.
    """

    action = models.CharField(_("action"), max_length=50, help_text=_('"pool_restart" or "shutdown".'))
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("requested by"),
        null=True,
        on_delete=models.SET_NULL,
        related_name="worker_control_events",
    )
    username = models.CharField(_("username"), max_length=150, help_text=_("Kept if the user is deleted."))
    destination = models.JSONField(_("destination"), null=True, blank=True, help_text=_("Worker names; empty: all."))
    outcome = models.JSONField(_("outcome"), default=dict, blank=True, help_text=_("Each worker's answer."))
    created_at = models.DateTimeField(_("when"), auto_now_add=True)

    class Meta:
        verbose_name = _("worker control event")
        verbose_name_plural = _("worker control events")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["-created_at", "-id"], name="workerctl_created_idx")]

    def __str__(self) -> str:
        return f"{self.action} by {self.username} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class DeletedPeriodicJob(models.Model):
    """A system periodic job an operator deleted: it is not created again after the next `migrate`.

    The system's jobs (tasks_app.schedules) are created after every migration; without this
    mark a job deleted in the admin would come back at the next deploy.
    `manage.py setup_periodic_tasks --restore-deleted` creates it again and drops the mark.
    """

    name = models.CharField(
        _("name"), max_length=200, unique=True, help_text=_("The periodic job's name (tasks_app.schedules).")
    )
    deleted_at = models.DateTimeField(_("deleted at"), auto_now_add=True)

    class Meta:
        verbose_name = _("deleted system job")
        verbose_name_plural = _("deleted system jobs")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
