"""What the task system's admins share: read-only rows, and list filters whose choices come from the
configuration, not from a DISTINCT over millions of rows."""

from functools import cache

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _


class ReadOnlyAdminMixin:
    """Rows the admin shows and never adds, changes or deletes: the system writes them."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class PlainActionCheckboxMixin:
    """The list's action checkbox as one format_html, not a form widget rendered through a template for
    each row (~12% of a task changelist's CPU in a py-spy profile); the same HTML as Django's."""

    def action_checkbox(self, obj):
        label = format_html(gettext("Select this object for an action - {}"), str(obj))
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            ACTION_CHECKBOX_NAME,
            str(obj.pk),
            label,
        )


class QueueFilter(admin.SimpleListFilter):
    """The system's queues."""

    title = _("queue")
    parameter_name = "queue"

    def lookups(self, request, model_admin):
        return [(name, name) for name in settings.TASK_QUEUES]

    def queryset(self, request, queryset):
        return queryset.filter(queue=self.value()) if self.value() else queryset


@cache
def registered_task_names() -> list[tuple[str, str]]:
    """(name, short name) of the tasks the Celery app registers: constant for the life of a process."""
    from claw_ai.celery import celery_app

    celery_app.loader.import_default_modules()  # the web process imports task modules only on demand
    names = sorted(name for name in celery_app.tasks if not name.startswith("celery."))
    return [(name, name.rsplit(".", 1)[-1]) for name in names]


class TaskNameFilter(admin.SimpleListFilter):
    """The tasks the Celery app registers (a `task_name` column: task records and stored results)."""

    title = _("task name")
    parameter_name = "task_name"

    def lookups(self, request, model_admin):
        return registered_task_names()

    def queryset(self, request, queryset):
        return queryset.filter(task_name=self.value()) if self.value() else queryset
