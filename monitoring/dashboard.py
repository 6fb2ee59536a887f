"""The figures of the admin's monitoring dashboard, from the task records and messages.

Every query is bounded by the range on an indexed column: finished tasks by `done_at`
(taskrec_done_idx), replies through their AI task records (done_at), then the message of each
by its task id (msg_task_idx). bench/monitoring.py times the page on the million-record table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
from django.utils import timezone

from conversations.models import Message
from tasks_app.models import TaskRecord

AI_TASK = "tasks_app.tasks.ai_tasks.generate_ai_response"
FINAL_STATES = ("SUCCESS", "FAILURE", "REVOKED")


@dataclass(frozen=True)
class Range:
    key: str
    label: str
    span: timedelta
    step: timedelta  # one bar or point
    usage_step: timedelta  # tokens and cost
    time_format: str


RANGES = {
    "hour": Range("hour", "last hour", timedelta(hours=1), timedelta(minutes=2), timedelta(minutes=10), "%H:%M"),
    "day": Range("day", "last 24 hours", timedelta(days=1), timedelta(minutes=30), timedelta(hours=3), "%H:%M"),
    "week": Range("week", "last 7 days", timedelta(days=7), timedelta(hours=4), timedelta(days=1), "%a %d"),
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


def _tables() -> dict:
    return {"records": TaskRecord._meta.db_table, "messages": Message._meta.db_table}


def figures(range_: Range, *, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    # Buckets aligned to the step, so the chart does not shift with every reload.
    since = datetime.fromtimestamp(
        ((now - range_.span).timestamp() // range_.step.total_seconds()) * range_.step.total_seconds(), tz=now.tzinfo
    )
    params = {"since": since, "step": range_.step, "usage_step": range_.usage_step, "ai": AI_TASK, "origin": since}
    tables = _tables()
    times = _buckets(since, now, range_.step)
    index = {at: i for i, at in enumerate(times)}
    minutes = range_.step.total_seconds() / 60

    finished = {state: [0.0] * len(times) for state in FINAL_STATES}
    for at, state, count in _rows(
        f"SELECT date_bin(%(step)s, done_at, %(origin)s), state, count(*) FROM {tables['records']} "
        f"WHERE done_at >= %(since)s AND state IN ('SUCCESS', 'FAILURE', 'REVOKED') GROUP BY 1, 2",
        params,
    ):
        if at in index:
            finished[state][index[at]] = count / minutes
    failure_rate = [
        100 * f / (s + f) if s + f else None for s, f in zip(finished["SUCCESS"], finished["FAILURE"], strict=True)
    ]

    by_name = _rows(
        f"""SELECT task_name, count(*),
               percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY extract(epoch FROM done_at - started_at)),
               percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY greatest(0, extract(epoch FROM
                   started_at - greatest(created_at, coalesce(eta, created_at)))))
        FROM {tables["records"]}
        WHERE done_at >= %(since)s AND state IN ('SUCCESS', 'FAILURE') AND started_at IS NOT NULL
        GROUP BY task_name ORDER BY count(*) DESC LIMIT 10""",
        params,
    )

    reply_time = {"p50": [None] * len(times), "p95": [None] * len(times)}
    for at, (p50, p95) in _rows(
        f"""SELECT date_bin(%(step)s, done_at, %(origin)s),
               percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY extract(epoch FROM done_at - created_at))
        FROM {tables["records"]} WHERE done_at >= %(since)s AND task_name = %(ai)s AND state = 'SUCCESS'
        GROUP BY 1""",
        params,
    ):
        if at in index:
            reply_time["p50"][index[at]], reply_time["p95"][index[at]] = p50, p95

    replies = f"""FROM {tables["records"]} r
        JOIN {tables["messages"]} m ON m.task_id = r.task_id AND m.role = 'assistant'
        WHERE r.done_at >= %(since)s AND r.task_name = %(ai)s AND r.state = 'SUCCESS'"""
    usage = _rows(
        f"SELECT date_bin(%(usage_step)s, r.done_at, %(origin)s), m.model, "
        f"sum(m.prompt_tokens + m.completion_tokens), sum(m.cost) {replies} GROUP BY 1, 2 ORDER BY 1, 2",
        params,
    )
    top_users = _rows(
        f"SELECT r.user_id, sum(m.cost), count(*) {replies} AND r.user_id <> '' "
        f"GROUP BY r.user_id ORDER BY 2 DESC, 1 LIMIT 10",
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
        "usage": usage,
        "top_users": top_users,
    }
