"""The task admin: find tasks fast, read what happened, retry or cancel in bulk.

Records are read-only here; only the actions change them, through the same
services as the API (tasks_app.services), and every action is written to
Django's admin log. django-celery-results' TaskResult admin is made read-only
and cheap on big tables by tasks_app.admin_results. django-celery-beat's periodic task admin is
replaced by tasks_app.admin_schedules (imported below: autodiscovery imports
only this module).
"""

import json
from functools import cache

from django.contrib import admin, messages
from django.contrib.admin import ShowFacets
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import Q
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django_celery_results.models import TaskResult

from tasks_app import admin_results, admin_schedules  # noqa: F401 (register the TaskResult and periodic task admins)
from tasks_app.admin_base import PlainActionCheckboxMixin, QueueFilter, ReadOnlyAdminMixin, TaskNameFilter
from tasks_app.models import TaskRecord, TaskState, WorkerControlEvent
from tasks_app.paginators import KeysetPaginationMixin

STATE_COLOURS = {
    TaskState.PENDING: "#777777",
    TaskState.STARTED: "#1f6fb2",
    TaskState.RETRY: "#b26b00",
    TaskState.SUCCESS: "#2e7d32",
    TaskState.FAILURE: "#c62828",
    TaskState.REVOKED: "#6a1b9a",
}
# A bulk action touches at most this many tasks; narrow the filter for more.
ACTION_LIMIT = 500
PRE_STYLE = "white-space: pre-wrap; font-family: monospace; max-height: 40em; overflow: auto; margin: 0"


def _pre(text: str):
    return format_html('<pre style="{}">{}</pre>', PRE_STYLE, text) if text else "-"


def _breakable(name: str):
    """A snake_case name that may wrap after its underscores when a column is narrow (no hyphen added)."""
    return format_html_join(mark_safe("_<wbr>"), "{}", ((part,) for part in name.split("_")))


def _pretty_json(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def _admin_link(obj, label=None):
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, label or str(obj))


@cache
def _conversation_changelist_url() -> str | None:
    """Reversed once per process, not once per row of every page."""
    try:
        return reverse("admin:conversations_conversation_changelist")
    except NoReverseMatch:
        return None


@admin.register(TaskRecord)
class TaskRecordAdmin(KeysetPaginationMixin, PlainActionCheckboxMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "short_task_name",
        "coloured_state",
        "queue_name",
        "priority",
        "submitted_by",
        "conversation",
        "created_at",
        "queue_wait_seconds",
        "runtime_seconds",
        "retries",
    )
    list_display_links = ("id", "short_task_name")
    list_filter = ("state", QueueFilter, TaskNameFilter, ("created_at", admin.DateFieldListFilter))
    search_fields = ("=task_id", "=conversation_id", "=user_id")
    search_help_text = _("Exact task id, conversation id, chat user id, or the number of a record or owner.")
    list_select_related = ("submitted_by",)
    # Only indexed orderings: the default (-created_at, -id) and the primary key.
    sortable_by = ("id", "created_at")
    list_per_page = 50
    # No COUNT(*) of the whole table or of facets on each page view; pages by keyset (tasks_app.paginators).
    show_facets = ShowFacets.NEVER
    actions = ["retry_selected", "cancel_selected"]

    class Media:
        css = {"all": ["tasks_app/admin/task_list.css"]}  # the list fits 1,280 px

    fieldsets = (
        (None, {"fields": ("task_id", "task_name", "coloured_state", "queue", "priority", "eta", "worker")}),
        (_("Who and what"), {"fields": ("submitted_by", "user_id", "conversation", "periodic_task_name")}),
        (_("Arguments"), {"fields": ("args_json", "kwargs_json")}),
        (_("Outcome"), {"fields": ("result_json", "error", "traceback_text", "task_result_link")}),
        (
            _("Timing"),
            {
                "fields": (
                    "created_at",
                    "started_at",
                    "done_at",
                    "queue_wait_seconds",
                    "runtime_seconds",
                    "retries",
                    "resent_count",
                    "resent_at",
                )
            },
        ),
        (_("Lineage"), {"fields": ("retry_of_link", "retried_by_links")}),
    )
    # Every field shown is read-only (these fieldsets name fields only, no rows of several: hence the ignore).
    readonly_fields = [field for group in fieldsets for field in group[1]["fields"]]  # type: ignore[misc]

    # --- permissions: view only (ReadOnlyAdminMixin); the actions need the change permission ----
    def has_operate_permission(self, request):
        return request.user.has_perm("tasks_app.change_taskrecord")

    # --- changelist -------------------------------------------------------------------------
    def get_search_results(self, request, queryset, search_term):
        """Exact matches only, each served by an index (no LIKE scans on millions of rows)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q(task_id=term) | Q(conversation_id=term) | Q(user_id=term)
        if term.isdigit():
            match |= Q(pk=int(term)) | Q(submitted_by_id=int(term))
        return queryset.filter(match), False

    @admin.display(description=_("task name"))
    def short_task_name(self, record):
        """The function name; the full dotted name shows on hover and on the detail page."""
        short = _breakable(record.task_name.rsplit(".", 1)[-1])
        return format_html('<span title="{}">{}</span>', record.task_name, short)

    @admin.display(description=_("queue"))
    def queue_name(self, record):
        return _breakable(record.queue)

    @admin.display(description=_("state"), ordering="state")
    def coloured_state(self, record):
        return format_html(
            '<span style="color: #fff; background: {}; padding: 1px 6px; border-radius: 3px">{}</span>',
            STATE_COLOURS.get(record.state, "#777777"),
            record.state,
        )

    def changelist_view(self, request, extra_context=None):
        # Eleven columns and the filters fit a 1,280 px window only without the app list on the left
        # (every other admin page keeps it; the breadcrumbs lead back).
        return super().changelist_view(request, {"is_nav_sidebar_enabled": False, **(extra_context or {})})

    @admin.display(description=_("conversation"))
    def conversation(self, record):
        if not record.conversation_id:
            return "-"
        # A long id is cut in the list (whole on hover and on the detail page), so the columns fit.
        shown = record.conversation_id if len(record.conversation_id) <= 14 else record.conversation_id[:13] + "…"
        url = _conversation_changelist_url()
        if url is None:
            return format_html('<span title="{}">{}</span>', record.conversation_id, shown)
        return format_html(
            '<a href="{}?{}" title="{}">{}</a>',
            url,
            urlencode({"q": record.conversation_id}),
            record.conversation_id,
            shown,
        )

    @admin.display(description=_("runtime (s)"))
    def runtime_seconds(self, record):
        return record.runtime if record.runtime is not None else "-"

    @admin.display(description=_("queue wait (s)"))
    def queue_wait_seconds(self, record):
        """Seconds from publish (or a delayed task's eta) to its start: how long it waited for a worker."""
        if record.started_at is None:
            return "-"
        ready = max(record.created_at, record.eta) if record.eta else record.created_at
        return round(max((record.started_at - ready).total_seconds(), 0.0), 3)

    # --- detail --------------------------------------------------------------------------------
    @admin.display(description=_("args"))
    def args_json(self, record):
        return _pre(_pretty_json(record.args))

    @admin.display(description=_("kwargs"))
    def kwargs_json(self, record):
        return _pre(_pretty_json(record.kwargs))

    def _task_result(self, record):
        if not hasattr(record, "_task_result"):
            record._task_result = TaskResult.objects.filter(task_id=record.task_id).first()
        return record._task_result

    @admin.display(description=_("result"))
    def result_json(self, record):
        result = self._task_result(record)
        if result is None or result.result is None:
            return "-"
        try:
            return _pre(_pretty_json(json.loads(result.result)))
        except (TypeError, ValueError):
            return _pre(result.result)

    @admin.display(description=_("traceback"))
    def traceback_text(self, record):
        return _pre(record.traceback)

    @admin.display(description=_("stored result"))
    def task_result_link(self, record):
        result = self._task_result(record)
        if result is None:
            return _("none yet (a result is stored once a worker starts the task)")
        return _admin_link(result, f"TaskResult {result.task_id} [{result.status}]")

    @admin.display(description=_("retry of"))
    def retry_of_link(self, record):
        return _admin_link(record.retry_of) if record.retry_of_id else "-"

    @admin.display(description=_("retried by"))
    def retried_by_links(self, record):
        retries = list(record.retried_by.order_by("created_at", "id")[:50])
        if not retries:
            return "-"
        return format_html_join(
            mark_safe("<br>"),
            "{}",
            ((_admin_link(retry),) for retry in retries),
        )

    # --- actions -------------------------------------------------------------------------------
    @admin.action(description=_("Retry selected tasks"), permissions=["operate"])
    def retry_selected(self, request, queryset):
        return self._confirm_then_run(request, queryset, action="retry_selected")

    @admin.action(description=_("Cancel selected tasks"), permissions=["operate"])
    def cancel_selected(self, request, queryset):
        return self._confirm_then_run(request, queryset, action="cancel_selected")

    def _confirm_then_run(self, request, queryset, *, action: str):
        from tasks_app import services

        verb, allowed = {
            "retry_selected": (_("retry"), services.RETRYABLE_STATES),
            "cancel_selected": (_("cancel"), services.CANCELLABLE_STATES),
        }[action]
        records = list(queryset.select_related("submitted_by")[: ACTION_LIMIT + 1])
        if len(records) > ACTION_LIMIT:
            self.message_user(
                request,
                _("At most %(limit)d tasks per action: narrow the selection.") % {"limit": ACTION_LIMIT},
                messages.ERROR,
            )
            return None
        if request.POST.get("post") != "yes":
            return TemplateResponse(
                request,
                "admin/tasks_app/taskrecord/action_confirmation.html",
                {
                    **self.admin_site.each_context(request),
                    "title": _("Are you sure you want to %(verb)s these tasks?") % {"verb": verb},
                    "opts": self.model._meta,
                    "action": action,
                    "verb": verb,
                    "records": records,
                    "allowed_states": sorted(allowed),
                    "refused": [record for record in records if record.state not in allowed],
                    "action_checkbox_name": ACTION_CHECKBOX_NAME,
                },
            )
        if action == "retry_selected":
            done, refused = self._run(request, records, self._retry_one)
        else:
            done, refused = self._run(request, records, self._cancel_one)
        if done:
            self.message_user(
                request,
                ngettext("Did %(verb)s %(count)d task: %(list)s", "Did %(verb)s %(count)d tasks: %(list)s", len(done))
                % {"verb": verb, "count": len(done), "list": "; ".join(done)},
                messages.SUCCESS,
            )
        if refused:
            self.message_user(
                request,
                ngettext(
                    "Refused to %(verb)s %(count)d task: %(list)s",
                    "Refused to %(verb)s %(count)d tasks: %(list)s",
                    len(refused),
                )
                % {"verb": verb, "count": len(refused), "list": "; ".join(refused)},
                messages.WARNING,
            )
        return None

    def _run(self, request, records, run_one):
        from tasks_app import services

        done, refused = [], []
        for record in records:
            try:
                done.append(run_one(request, record))
            except services.TaskStateConflict as conflict:
                refused.append(f"{record.task_id} ({_('state is')} {conflict.record.state})")
            except services.BrokerUnavailable as exc:
                refused.append(f"{record.task_id} ({_('broker unavailable')}: {exc})")
            except services.UnknownTaskName:
                refused.append(f"{record.task_id} ({_('no worker runs')} {record.task_name})")
            except services.TooManyUnfinishedTasks as exc:
                refused.append(f"{record.task_id} ({exc})")
        return done, refused

    def _retry_one(self, request, record) -> str:
        from tasks_app import services

        new, is_new = services.retry_task(record=record, by=request.user)
        if not is_new:
            return f"{record.task_id} → {new.task_id} ({_('its earlier retry, still pending')})"
        self.log_change(request, record, f"Retried as task {new.task_id}")
        self.log_addition(request, new, f"Retry of task {record.task_id}")
        return f"{record.task_id} → {new.task_id}"

    def _cancel_one(self, request, record) -> str:
        from tasks_app import services

        services.cancel_task(record=record, by=request.user)
        self.log_change(request, record, "Cancelled")
        return record.task_id


@admin.register(WorkerControlEvent)
class WorkerControlEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Who restarted or shut down which workers through the API (written by tasks_app.workers); read-only."""

    list_display = ("created_at", "action", "username", "destination")
    list_filter = ("action",)
    search_fields = ("=username",)
    readonly_fields = ("created_at", "action", "requested_by", "username", "destination", "outcome")
