"""django-celery-results' TaskResult admin, read-only and as cheap on a million rows as the task list.

The library's admin counts every row twice per page view, pages with OFFSET, draws its date hierarchy
and three of its filters from DISTINCT scans of the whole table and searches with LIKE over the
arguments: 74 s for the first view of a deep page of 1,000,000 results. Here the page is one index
range scan (tasks_app.paginators), the filters' choices come from the configuration, and the search
is an exact task id (its unique index).
"""

from celery import states
from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from django_celery_results.admin import TaskResultAdmin
from django_celery_results.models import TaskResult

from tasks_app.admin_base import ReadOnlyAdminMixin, TaskNameFilter
from tasks_app.paginators import KeysetPaginationMixin


class StatusFilter(admin.SimpleListFilter):
    """Celery's states (the library filters by a DISTINCT over the whole table)."""

    title = _("status")
    parameter_name = "status__exact"

    def lookups(self, request, model_admin):
        return [(state, state) for state in sorted(states.ALL_STATES)]

    def queryset(self, request, queryset):
        return queryset.filter(status=self.value()) if self.value() else queryset


class ReadOnlyTaskResultAdmin(KeysetPaginationMixin, ReadOnlyAdminMixin, TaskResultAdmin):
    """Results move with their records: no add, change or delete."""

    # The library's class attributes are plain tuples and a str; these replace them with other shapes.
    date_hierarchy = None  # type: ignore[assignment]
    list_filter = (StatusFilter, TaskNameFilter, ("date_done", admin.DateFieldListFilter))  # type: ignore[assignment]
    search_fields = ("=task_id",)  # type: ignore[assignment]
    search_help_text = _("Exact task id.")
    # Only the indexed ordering (date_done, then the primary key as Django's admin adds it).
    sortable_by = ("date_done",)
    list_per_page = 50
    show_facets = admin.ShowFacets.NEVER

    def get_search_results(self, request, queryset, search_term):
        # Django's "=task_id" is a case-insensitive match (UPPER(...) = UPPER(...)), which no index serves.
        term = search_term.strip()
        return (queryset.filter(task_id=term) if term else queryset), False


admin.site.unregister(TaskResult)
admin.site.register(TaskResult, ReadOnlyTaskResultAdmin)
