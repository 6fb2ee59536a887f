"""Reading the dashboard's rollup (monitoring.models.MetricRollup, written by monitoring.fold).

Durations are kept as histograms: bucket k holds the values in (BASE·GROWTH^(k-1), BASE·GROWTH^k]
seconds, bucket 0 those up to BASE. A percentile is read as Prometheus' histogram_quantile reads
one: the bucket holding the rank, interpolated linearly inside it, so it is within GROWTH - 1
(10%) of the value a sort of the records would give. The SQL function monitoring_rollup_bucket
(migration 0002) holds the same three numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

BASE = 0.001  # seconds
GROWTH = 1.1
LAST_BUCKET = 200

MINUTE, HOUR = 60, 3600  # the spans kept, in seconds


def upper_bound(bucket: int) -> float:
    return BASE * GROWTH**bucket


def lower_bound(bucket: int) -> float:
    return 0.0 if bucket <= 0 else upper_bound(bucket - 1)


def percentiles(counts: Mapping[int, float], quantiles: Iterable[float]) -> list[float | None]:
    """Each quantile (0..1) of the values counted in `counts` {bucket: count}; None when empty."""
    ordered = sorted((bucket, float(count)) for bucket, count in counts.items() if count > 0)
    total = sum(count for _, count in ordered)
    if not total:
        return [None for _ in quantiles]
    result: list[float | None] = []
    for quantile in quantiles:
        rank, below = quantile * total, 0.0
        for bucket, count in ordered:
            if below + count >= rank:
                low, high = lower_bound(bucket), upper_bound(bucket)
                result.append(low + (high - low) * (rank - below) / count)
                break
            below += count
        else:  # rounding left the rank past the last count
            result.append(upper_bound(ordered[-1][0]))
    return result
