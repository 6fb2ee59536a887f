"""A paginator that never counts millions of rows to draw one admin page.

The admin asks its paginator for `count` on every page view. On a task table
with millions of rows an exact COUNT(*) scans the whole table. This paginator:
- unfiltered: reads PostgreSQL's planner estimate (pg_class.reltuples, kept fresh
  by autovacuum's ANALYZE), exact only when the table is small;
- filtered: counts at most CAP + 1 rows (an index scan bounded by LIMIT), so the
  admin says "more than CAP" and pages up to it for very large matches.
The admin's pagination template (admin/tasks_app/taskrecord/pagination.html) shows
which kind of number it is.
"""

from typing import TYPE_CHECKING, cast

from django.core.paginator import Paginator
from django.utils.functional import cached_property

from tasks_app import records

if TYPE_CHECKING:
    from django.db.models import QuerySet

# Below this many rows an exact count is cheap.
EXACT_COUNT_BELOW = 10_000
# A filtered count stops here.
FILTERED_COUNT_CAP = 10_000


class EstimatedCountPaginator(Paginator):
    count_is_estimate = False
    count_is_capped = False
    cap = FILTERED_COUNT_CAP

    @cached_property
    def count(self) -> int:
        queryset = cast("QuerySet", self.object_list)  # the admin hands it a queryset, never a list
        if not queryset.query.where:
            estimate = records.estimated_rows(queryset.model, using=queryset.db)
            if estimate >= EXACT_COUNT_BELOW:
                self.count_is_estimate = True
                return estimate
            return queryset.count()
        count = queryset[: self.cap + 1].count()
        self.count_is_capped = count > self.cap
        return count
