"""How long the dashboard's rollup keeps its time bins, and the pruning that holds it to that.

The rollup's fold (monitoring.fold) writes rows for every minute bin and every hour bin in which
work was done: left alone, the minute rows alone grow by some 1,440 bins a day times the figures
of each. The dashboard reads minute bins for its last hour and hour bins for its day and week
(monitoring.dashboard), so older bins are only history nobody draws: minute bins older than
METRICS_ROLLUP_MINUTE_BINS_DAYS and hour bins older than METRICS_ROLLUP_HOUR_BINS_DAYS are deleted
by a periodic job (tasks_app.schedules), a batch per transaction.

The Prometheus counters (MetricCounter) are never pruned: they must only ever grow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from monitoring.models import MetricRollup
from monitoring.rollup import HOUR, MINUTE


@dataclass(frozen=True)
class PruneReport:
    minute_rows: int
    hour_rows: int
    more: bool  # the time budget ran out with old rows left: the job runs again


def prune_rollup(*, now: datetime | None = None, batch_size: int = 5000, time_budget: float = 60) -> PruneReport:
    """Delete the bins past their keeping time, `batch_size` rows per statement, for at most
    `time_budget` seconds."""
    now = now or timezone.now()
    deadline = time.monotonic() + time_budget
    keep = {MINUTE: settings.METRICS_ROLLUP_MINUTE_BINS_DAYS, HOUR: settings.METRICS_ROLLUP_HOUR_BINS_DAYS}
    deleted = dict.fromkeys(keep, 0)
    for span, days in keep.items():
        old = MetricRollup.objects.filter(span=span, bin__lt=now - timedelta(days=days))
        # The unique constraint's index starts with (span, bin): each batch is one index range.
        while batch := list(old.order_by("bin").values_list("pk", flat=True)[:batch_size]):
            deleted[span] += MetricRollup.objects.filter(pk__in=batch).delete()[0]
            if time.monotonic() > deadline:
                return PruneReport(minute_rows=deleted[MINUTE], hour_rows=deleted[HOUR], more=True)
    return PruneReport(minute_rows=deleted[MINUTE], hour_rows=deleted[HOUR], more=False)
