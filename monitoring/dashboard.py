"""The figures of the admin's monitoring dashboard, from the rollup (monitoring.models.MetricRollup).

The rollup holds per-minute and per-hour sums folded from the records and replies (monitoring.fold;
the dashboard's view folds what finished since the last periodic fold before it reads), so a
range costs the same on a million records as on a thousand: the last hour reads
60 minute bins, the last day and week 25 and 169 hour bins (bench/monitoring.py times the page
on the million-record table). Every query is one range scan of the rollup's unique index
(span, bin, …).

The figures: finished tasks by final state (by done_at), percentiles of runtime and queue wait
per task name over the range, the replies' time from submit to reply (AI task successes), tokens
and cost per model (by the reply's time), and the chat users (of a tenant) who cost the most.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from monitoring.models import MetricRollup
from monitoring.rollup import HOUR, MINUTE, percentiles

AI_TASK = "tasks_app.tasks.ai_tasks.generate_ai_response"
FINAL_STATES = ("SUCCESS", "FAILURE", "REVOKED")
CODE_TENANT = "from code"  # conversations created from code, with no API user


@dataclass(frozen=True)
class Range:
    key: str
    label: str
    span: timedelta
    step: timedelta  # one bar or point
    usage_step: timedelta  # tokens and cost
    time_format: str
    bins: int  # the rollup's bin width in seconds (a step is a whole number of bins)


RANGES = {
    "hour": Range(
        "hour", "last hour", timedelta(hours=1), timedelta(minutes=2), timedelta(minutes=10), "%H:%M", MINUTE
    ),
    "day": Range("day", "last 24 hours", timedelta(days=1), timedelta(hours=1), timedelta(hours=3), "%H:%M", HOUR),
    "week": Range("week", "last 7 days", timedelta(days=7), timedelta(hours=4), timedelta(days=1), "%a %d", HOUR),
}


def _rows(sql: str, params: dict) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _buckets(since: datetime, until: datetime, step: timedelta) -> list[datetime]:
    times, at = [], since
    while at < until:
        times.append(at)
        at += step
    return times


def figures(range_: Range, *, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    # Steps aligned to the epoch (as the rollup's bins), so the chart does not shift with every reload.
    step_seconds = range_.step.total_seconds()
    since = datetime.fromtimestamp(((now - range_.span).timestamp() // step_seconds) * step_seconds, tz=now.tzinfo)
    table = connection.ops.quote_name(MetricRollup._meta.db_table)
    where = f"FROM {table} WHERE span = %(span)s AND bin >= %(since)s AND bin <= %(now)s"
    params = {
        "span": range_.bins,
        "since": since,
        "now": now,
        "step": range_.step,
        "usage_step": range_.usage_step,
        "origin": since,
        "ai": AI_TASK,
    }
    times = _buckets(since, now, range_.step)
    index = {at: i for i, at in enumerate(times)}
    minutes = step_seconds / 60

    finished = {state: [0.0] * len(times) for state in FINAL_STATES}
    for at, state, count in _rows(
        f"SELECT date_bin(%(step)s, bin, %(origin)s), label, sum(value) {where} AND figure = 'finished' GROUP BY 1, 2",
        params,
    ):
        if at in index and state in finished:
            finished[state][index[at]] = float(count) / minutes
    failure_rate = [
        100 * f / (s + f) if s + f else None for s, f in zip(finished["SUCCESS"], finished["FAILURE"], strict=True)
    ]

    histograms: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for figure, name, bucket, count in _rows(
        f"SELECT figure, name, bucket, sum(value) {where} AND figure IN ('runtime', 'wait') GROUP BY 1, 2, 3",
        params,
    ):
        histograms[(figure, name)][bucket] = float(count)
    names = sorted(
        {name for _, name in histograms}, key=lambda name: (-sum(histograms[("runtime", name)].values()), name)
    )[:10]
    by_name = [
        (
            name,
            int(sum(histograms[("runtime", name)].values())),
            percentiles(histograms[("runtime", name)], (0.5, 0.95)),
            percentiles(histograms[("wait", name)], (0.5, 0.95)),
        )
        for name in names
    ]

    reply_counts: dict[datetime, dict[int, float]] = defaultdict(dict)
    for at, bucket, count in _rows(
        f"SELECT date_bin(%(step)s, bin, %(origin)s), bucket, sum(value) {where} "
        f"AND figure = 'turnaround' AND name = %(ai)s GROUP BY 1, 2",
        params,
    ):
        reply_counts[at][bucket] = float(count)
    reply_time: dict[str, list[float | None]] = {"p50": [None] * len(times), "p95": [None] * len(times)}
    for at, counts in reply_counts.items():
        if at in index:
            reply_time["p50"][index[at]], reply_time["p95"][index[at]] = percentiles(counts, (0.5, 0.95))

    usage: dict[tuple[datetime, str], list] = {}
    for at, figure, model, total in _rows(
        f"SELECT date_bin(%(usage_step)s, bin, %(origin)s), figure, name, sum(value) {where} "
        f"AND figure IN ('tokens', 'cost') GROUP BY 1, 2, 3",
        params,
    ):
        usage.setdefault((at, model), [at, model, 0, 0])[2 if figure == "tokens" else 3] = total
    top = _rows(
        f"SELECT tenant, label, sum(value) {where} AND figure = 'user_cost' "
        f"GROUP BY 1, 2 HAVING sum(value) > 0 ORDER BY 3 DESC, 1, 2 LIMIT 10",
        params,
    )
    return {
        "since": since,
        "until": now,
        "times": times,
        "finished": finished,
        "failure_rate": failure_rate,
        "by_name": by_name,
        "reply_time": reply_time,
        "usage": [tuple(row) for _, row in sorted(usage.items())],
        "top_users": [(tenant, user, cost) for tenant, user, cost in top],
        "tenant_names": _tenant_names({tenant for tenant, _, _ in top}),
    }


def _tenant_names(ids: set[int]) -> dict[int, str]:
    """{tenant id: the API user's name} (CODE_TENANT for 0; the id for a deleted user)."""
    names = {tenant: str(tenant) for tenant in ids}
    names.update(get_user_model().objects.filter(pk__in=ids - {0}).values_list("pk", "username"))
    if 0 in ids:
        names[0] = CODE_TENANT
    return names
