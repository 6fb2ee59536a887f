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

from typing import Any, cast

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property

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
        # The admin gives its paginator a QuerySet (Paginator's own type allows any sequence).
        queryset = cast("QuerySet[Any]", self.object_list)
        if not queryset.query.where:
            estimate = self._table_estimate(queryset)
            if estimate >= EXACT_COUNT_BELOW:
                self.count_is_estimate = True
                return estimate
            return queryset.count()
        count = queryset[: self.cap + 1].count()
        self.count_is_capped = count > self.cap
        return count

    @staticmethod
    def _table_estimate(queryset) -> int:
        connection = connections[queryset.db]
        if connection.vendor != "postgresql":
            return -1
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                [queryset.model._meta.db_table],
            )
            row = cursor.fetchone()
        # -1 means "never analyzed": fall back to counting.
        return int(row[0]) if row else -1
