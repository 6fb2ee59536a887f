"""A paginator that never counts millions of rows to draw one admin page.

The admin asks its paginator for `count` on every page view. On a task table
with millions of rows an exact COUNT(*) scans the whole table. This paginator:
- unfiltered: reads PostgreSQL's planner estimate (pg_class.reltuples, kept fresh
  by autovacuum's ANALYZE), exact only when the table is small;
- filtered: counts at most CAP + 1 rows (an index scan bounded by LIMIT), so the
  admin shows "CAP" and pages up to it for very large matches.
"""

from django.core.paginator import Paginator
from django.db import connections
from django.utils.functional import cached_property

# Below this many rows an exact count is cheap.
EXACT_COUNT_BELOW = 10_000
# A filtered count stops here.
FILTERED_COUNT_CAP = 10_000


class EstimatedCountPaginator(Paginator):
    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not queryset.query.where:
            estimate = self._table_estimate(queryset)
            if estimate >= EXACT_COUNT_BELOW:
                return estimate
            return queryset.count()
        return queryset[: FILTERED_COUNT_CAP + 1].count()

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
