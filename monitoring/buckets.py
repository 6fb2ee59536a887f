"""Histogram bucket bounds, shared by the PostgreSQL triggers (migration 0001) and Python.

A bucket is stored as its 1-based index into the bounds ("b3"); index len(bounds) + 1 is +Inf.
The triggers carry a frozen copy of these lists; tests/monitoring/test_buckets.py checks they agree.
"""

# Task runtime and queue wait, in seconds: Prometheus' defaults (celery-exporter's), extended to
# the AI task's 300 s soft and 600 s hard time limits.
TASK_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
# OpenTelemetry GenAI semantic conventions' advised buckets.
TOKENS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
OPERATION_SECONDS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
FIRST_TOKEN_SECONDS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)


def bucket_of(value: float, bounds: tuple[float, ...]) -> str:
    """The stored bucket of `value`: Prometheus' `le` is inclusive, so the first bound >= value."""
    return f"b{1 + sum(1 for bound in bounds if bound < value)}"


def cumulative(counts: dict[str, float], bounds: tuple[float, ...]) -> list[tuple[str, float]]:
    """[(le, cumulative count)] for prometheus_client, from stored per-bucket counts."""
    result, running = [], 0.0
    for index, bound in enumerate((*bounds, float("inf")), 1):
        running += counts.get(f"b{index}", 0)
        result.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
    return result
