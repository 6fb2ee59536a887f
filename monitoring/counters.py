"""Python-side writes to the metric counters, the fold of the triggers' increments, and the one read of them all.

Most counters are counted by PostgreSQL triggers (migrations 0001, 0003), which append their
deltas to MetricIncrement (migration 0005: writers never wait on a counter row); fold_increments
moves them into the counters every FOLD_EVERY_SECONDS (a periodic job), and every read adds the
increments not folded yet, in the same statement, so a read sees each delta exactly once. The
events PostgreSQL never sees are added here: a message a worker received, a provider call's
duration, a 429, a failed scrape. Those writes are one upsert statement in autocommit;
`PendingCounts` batches a worker's per-message events and writes them from a background thread
about once a second.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections import defaultdict
from decimal import Decimal
from typing import TYPE_CHECKING, NamedTuple

from django.db import DatabaseError, connection

from monitoring.buckets import bucket_of
from monitoring.models import MetricCounter, MetricIncrement

if TYPE_CHECKING:
    from collections.abc import Mapping

logger = logging.getLogger(__name__)

SLOTS = 8


class Series(NamedTuple):
    metric: str
    name: str = ""
    queue: str = ""
    model: str = ""
    label: str = ""
    kind: str = ""


def histogram(
    metric: str, value: float, bounds: tuple[float, ...], *, name="", queue="", model="", label=""
) -> dict[Series, float]:
    """The deltas of one observation: one in its bucket, `value` on the sum."""
    return {
        Series(metric, name, queue, model, label, bucket_of(value, bounds)): 1,
        Series(metric, name, queue, model, label, "sum"): value,
    }


def add(deltas: Mapping[Series, float | Decimal]) -> None:
    """Add `deltas` to their series, in one statement (sorted, as the fold does, against deadlocks)."""
    if not deltas:
        return
    table = connection.ops.quote_name(MetricCounter._meta.db_table)
    # The slot only spreads concurrent writes over rows: no secret, so no cryptographic randomness.
    rows = sorted((*series, random.randrange(SLOTS), Decimal(str(value))) for series, value in deltas.items())  # noqa: S311
    values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s)"] * len(rows))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (metric, name, queue, model, label, kind, slot, value) VALUES {values} "
            f"ON CONFLICT (metric, name, queue, model, label, kind, slot) "
            f"DO UPDATE SET value = {table}.value + EXCLUDED.value",
            [part for row in rows for part in row],
        )


SERIES_COLUMNS = "metric, name, queue, model, label, kind"


def _series_values(where: str = "") -> str:
    """Every series' rows of the counters and the increments not folded yet (one snapshot: a fold
    moving increments into the counters at the same moment is seen before or after, never half)."""
    counters = connection.ops.quote_name(MetricCounter._meta.db_table)
    increments = connection.ops.quote_name(MetricIncrement._meta.db_table)
    return (
        f"SELECT {SERIES_COLUMNS}, value FROM {counters} {where} "
        f"UNION ALL SELECT {SERIES_COLUMNS}, value FROM {increments} {where}"
    )


def totals() -> dict[Series, Decimal]:
    """Every series' value (summed over its slots and increments): one grouped scan of two small tables."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {SERIES_COLUMNS}, sum(value) FROM ({_series_values()}) AS v GROUP BY {SERIES_COLUMNS}")
        return {Series(*row[:6]): row[6] for row in cursor.fetchall()}


def fold_increments() -> int:
    """Move the triggers' increments into the counters (slot 0): one statement, so each increment is
    added exactly once (a concurrent fold finds the rows gone). Returns how many series moved."""
    counters = connection.ops.quote_name(MetricCounter._meta.db_table)
    increments = connection.ops.quote_name(MetricIncrement._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH moved AS (DELETE FROM {increments} RETURNING {SERIES_COLUMNS}, value) "
            f"INSERT INTO {counters} ({SERIES_COLUMNS}, slot, value) "
            f"SELECT {SERIES_COLUMNS}, 0, sum(value) FROM moved "
            f"GROUP BY {SERIES_COLUMNS} ORDER BY {SERIES_COLUMNS} "
            f"ON CONFLICT ({SERIES_COLUMNS}, slot) DO UPDATE SET value = {counters}.value + EXCLUDED.value"
        )
        return cursor.rowcount


# The one series that goes down: STARTED records per worker (label), counted by migration 0003's triggers.
RUNNING_TASKS = "claw_running_tasks"


def running_per_worker() -> dict[str, float]:
    """{worker: tasks it runs now}: one indexed read of a few rows, however many records there are."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT label, sum(value) FROM ({_series_values('WHERE metric = %(metric)s')}) AS v "
            f"GROUP BY label HAVING sum(value) <> 0",
            {"metric": RUNNING_TASKS},
        )
        return {worker: float(count) for worker, count in cursor.fetchall()}


class PendingCounts:
    """Counts added in memory and written every `interval` seconds by a daemon thread.

    For events in a worker's consumer (one per message received): a statement per message there
    would hold up the consumer. A process killed by SIGKILL loses at most one interval of counts;
    a warm shutdown writes them (monitoring.events calls flush()). Safe after fork: a child
    starts its own thread and drops counts inherited from its parent.
    """

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._counts: dict[Series, float] = defaultdict(float)
        self._pid: int | None = None
        self._wake = threading.Event()

    def add(self, series: Series, value: float = 1) -> None:
        with self._lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._counts = defaultdict(float)
                threading.Thread(target=self._run, name="metric-counts", daemon=True).start()
            self._counts[series] += value

    def flush(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, defaultdict(float)
        if not counts:
            return
        try:
            add(counts)
        except DatabaseError:
            logger.warning("could not write %d metric count(s); kept for the next try", len(counts), exc_info=True)
            with self._lock:
                for series, value in counts.items():
                    self._counts[series] += value

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            try:
                self.flush()
            finally:
                # This thread's own connection: closed between writes rather than held for ever.
                connection.close()
