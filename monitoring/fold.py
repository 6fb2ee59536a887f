"""Folding finished work into the dashboard's rollup (monitoring.models.MetricRollup), outside the writers.

Why not triggers any more (issue 19): migration 0002's triggers upserted 14 rollup rows in the
transaction of every reply's end, and every reply finishing in the same minute upserted the same
rows, so concurrent replies queued on their row locks: the SUCCESS write of a task record took
10.7 ms on average (0.3 ms for its publish INSERT), the reply's message insert 7.9 ms, in a drain
of 1,000 replies. The records and replies are the truth; the rollup is a cache of sums over them,
so it can be computed after the fact by one reader instead of by every writer.

A fold recomputes (replaces, not adds) the minute bins from `start` on out of the records
finished (done_at) and the replies saved (created_at) in them, both read through an index on
that column, then each hour bin from `start`'s hour on out of its minute bins. `start` is where
the last fold ended (RollupFold.folded_until) less LATENESS, so a writer whose timestamp was
taken a little before it committed (or on a clock a little behind) is still counted. Older bins
are never recomputed: deleting old records (the cleanup job) leaves the charts as they were.
Rows are written only where a value changed, and rows of a recomputed bin that no record holds
any more are deleted.

Who folds: a periodic job every FOLD_EVERY_SECONDS (tasks_app.schedules), and the dashboard
before it reads (monitoring.views), so the page shows a reply finished a moment ago and its fold
covers at most a job interval and LATENESS of work. Folds take turns on the RollupFold row.

Bucket numbers come from monitoring_rollup_bucket (migration 0002; monitoring.rollup reads them).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from conversations.models import Conversation, Message
from monitoring.models import MetricRollup, RollupFold
from monitoring.rollup import HOUR, MINUTE
from tasks_app.models import TaskRecord

# A record counts in the bin of its done_at, written by the worker just before its transaction
# commits: a fold recomputes this much before where the last one ended, to count it anyway.
LATENESS = timedelta(seconds=60)
FOLD_EVERY_SECONDS = 30
SERIES = "figure, name, label, tenant, bucket"


@dataclass(frozen=True)
class FoldReport:
    start: datetime  # the first minute bin recomputed
    minute_rows: int  # minute rows written or deleted (a row whose value did not change is not written)
    hour_rows: int


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _replace(computed: str) -> str:
    """Make the rollup's rows of span %(span)s from %(start)s on those of `computed` (span, bin, series, value)."""
    rollup = _table(MetricRollup)
    return f"""
    WITH computed AS ({computed}),
    written AS (
        INSERT INTO {rollup} AS r (span, bin, {SERIES}, value)
        SELECT span, bin, {SERIES}, value FROM computed ORDER BY bin, {SERIES}
        ON CONFLICT (span, bin, {SERIES}) DO UPDATE SET value = EXCLUDED.value
        WHERE r.value IS DISTINCT FROM EXCLUDED.value
        RETURNING 1
    ), gone AS (
        DELETE FROM {rollup} AS r WHERE r.span = %(span)s AND r.bin >= %(start)s AND NOT EXISTS (
            SELECT 1 FROM computed c
            WHERE (c.bin, c.figure, c.name, c.label, c.tenant, c.bucket)
                = (r.bin, r.figure, r.name, r.label, r.tenant, r.bucket)
        )
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM written) + (SELECT count(*) FROM gone)
    """


@functools.cache
def _minutes_sql() -> str:
    # The figures of migration 0002's triggers, per minute (tests/monitoring/test_rollup.py checks
    # a fold against that migration's backfill).
    return _replace(f"""
    WITH records AS (
        SELECT date_bin('60 seconds', done_at, 'epoch'::timestamptz) AS bin, task_name, state, created_at, eta,
               started_at, done_at
        FROM {_table(TaskRecord)}
        WHERE done_at >= %(start)s AND state IN ('SUCCESS', 'FAILURE', 'REVOKED')
    ), replies AS (
        SELECT date_bin('60 seconds', m.created_at, 'epoch'::timestamptz) AS bin, m.model,
               m.prompt_tokens + m.completion_tokens AS tokens, m.cost, c.user_id,
               coalesce(c.created_by_id, 0) AS tenant
        FROM {_table(Message)} m JOIN {_table(Conversation)} c ON c.id = m.conversation_id
        WHERE m.role = 'assistant' AND m.created_at >= %(start)s
    ), figures AS (
        SELECT bin, 'finished'::text AS figure, task_name::text AS name, state::text AS label, 0::bigint AS tenant,
               0::smallint AS bucket, 1::numeric AS v
        FROM records
        UNION ALL
        SELECT bin, 'runtime', task_name, '', 0,
               monitoring_rollup_bucket(greatest(0, extract(epoch FROM done_at - started_at))), 1
        FROM records WHERE state IN ('SUCCESS', 'FAILURE') AND started_at IS NOT NULL
        UNION ALL
        SELECT bin, 'wait', task_name, '', 0,
               monitoring_rollup_bucket(greatest(0, extract(epoch FROM
                   started_at - greatest(created_at, coalesce(eta, created_at))))), 1
        FROM records WHERE state IN ('SUCCESS', 'FAILURE') AND started_at IS NOT NULL
        UNION ALL
        SELECT bin, 'turnaround', task_name, '', 0,
               monitoring_rollup_bucket(greatest(0, extract(epoch FROM done_at - created_at))), 1
        FROM records WHERE state = 'SUCCESS'
        UNION ALL
        SELECT bin, 'tokens', model, '', 0, 0, tokens FROM replies
        UNION ALL
        SELECT bin, 'cost', model, '', 0, 0, cost FROM replies
        UNION ALL
        SELECT bin, 'user_cost', '', user_id, tenant, 0, cost FROM replies
    )
    SELECT {MINUTE} AS span, bin, {SERIES}, sum(v) AS value FROM figures GROUP BY bin, {SERIES}
    """)


@functools.cache
def _hours_sql() -> str:
    return _replace(f"""
    SELECT {HOUR} AS span, date_bin('3600 seconds', bin, 'epoch'::timestamptz) AS bin, {SERIES}, sum(value) AS value
    FROM {_table(MetricRollup)} WHERE span = {MINUTE} AND bin >= %(start)s
    GROUP BY 2, {SERIES}
    """)


def _floor(at: datetime, seconds: int) -> datetime:
    return datetime.fromtimestamp(at.timestamp() // seconds * seconds, tz=at.tzinfo)


def fold_rollup(*, since: datetime | None = None) -> FoldReport:
    """Bring the rollup up to the records and replies committed now.

    `since` recomputes from that time on as well (rounded down to its hour), e.g. after loading
    or correcting records in the past: its bins then hold what the records there hold now, so
    the history of records already deleted there is lost.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        # The migration creates the row; without it (a test's flush), fold what the minute bins keep.
        keep = timedelta(days=settings.METRICS_ROLLUP_MINUTE_BINS_DAYS)
        RollupFold.objects.get_or_create(pk=RollupFold.ONE, defaults={"folded_until": timezone.now() - keep})
        fold = RollupFold.objects.select_for_update().get(pk=RollupFold.ONE)
        cursor.execute("SELECT now()")
        now = cursor.fetchone()[0]
        start = fold.folded_until - LATENESS
        # An hour bin is the sum of its minute bins: where they may be pruned already, or an earlier
        # part of the hour is to be recomputed too, start with the hour.
        horizon = now - keep + timedelta(hours=1)
        if since is not None and since < start:
            start = _floor(since, HOUR)
        elif start < horizon:
            start = _floor(start, HOUR)
        else:
            start = _floor(start, MINUTE)
        cursor.execute(_minutes_sql(), {"span": MINUTE, "start": start})
        minute_rows = cursor.fetchone()[0]
        cursor.execute(_hours_sql(), {"span": HOUR, "start": _floor(start, HOUR)})
        hour_rows = cursor.fetchone()[0]
        fold.folded_until = max(now, fold.folded_until)
        fold.save()
    return FoldReport(start=start, minute_rows=minute_rows, hour_rows=hour_rows)
