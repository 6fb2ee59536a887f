"""GET /metrics: every figure computed at scrape time from PostgreSQL and Redis.

Why not prometheus-client's multiprocess mode: it sums per-process files in one directory, so
every web, worker and beat process must share one filesystem and the directory must be wiped
exactly when all of them restart together. Compose scales workers into separate containers,
and workers restart on their own (pool restarts, max-tasks-per-child, crashes): neither holds.
Why not counting rows of the task table: the cleanup job deletes finished records after
TASK_CLEANUP_AFTER_DAYS, and a counter must never go down.

So events are counted where they are written, into one shared store:
- task events (sent, started, succeeded, failed, retried, revoked; runtime and queue wait) and
  replies' tokens and cost: PostgreSQL triggers on the task records and messages append
  increments (monitoring.models.MetricIncrement), in the writing transaction, which a periodic
  fold moves into cumulative counters; a scrape reads both (monitoring.counters). Whichever
  process writes a record, the counts agree with it; deleting records leaves the counts alone.
  Why not computed from the records at scrape time: a record keeps only its last state, and
  the counters count every run (a retry or a redelivery starts again) and every retry. Started counts
  every run's STARTED write (a retry or a redelivery starts again); a Celery retry re-sends the
  same task, counted as retried and received again, not as sent.
- events PostgreSQL never sees (a message received by a worker, a provider call's duration,
  its 429s): written to the same counters by the process that saw them (monitoring.events).
- gauges: queue lengths and oldest message ages from the broker, live workers from the
  workers' discovery (tasks_app.workers, cached, never waited for), active tasks per worker
  from a count of the STARTED records counted by triggers (monitoring migrations 0003, 0005).
Any process can answer a scrape, and all answer the same. When a source fails (the broker is
down) the scrape still answers with the rest; `claw_scrape_errors_total{source}` counts it and
`claw_scrape_source_up{source}` is 0 for that scrape.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.cache import cache
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from monitoring import broker, buckets
from monitoring.counters import Series, add, running_per_worker, totals
from tasks_app.workers import SEEN_FOR, SEEN_KEY, live_workers

if TYPE_CHECKING:
    from collections.abc import Mapping
    from decimal import Decimal

logger = logging.getLogger(__name__)

TASK_LABELS = (("name", "name"), ("queue", "queue"))
# metric -> (help, [(label name, Series field)])
COUNTERS = {
    "celery_task_sent_total": ("Tasks published (one per task record).", TASK_LABELS),
    "celery_task_received_total": ("Task messages received by a worker.", TASK_LABELS),
    "celery_task_started_total": ("Task runs started.", TASK_LABELS),
    "celery_task_succeeded_total": ("Tasks that succeeded.", TASK_LABELS),
    "celery_task_failed_total": ("Tasks that failed.", TASK_LABELS),
    "celery_task_retried_total": ("Task runs that ended in a retry.", TASK_LABELS),
    "celery_task_revoked_total": ("Tasks cancelled (revoked).", TASK_LABELS),
    "claw_llm_cost_usd_total": ("Cost of the LLM replies saved, in US dollars.", (("model", "model"),)),
    "claw_llm_rate_limited_total": ("Provider calls answered 429 (rate limited).", (("model", "model"),)),
    "claw_scrape_errors_total": ("Scrapes in which a source could not be read.", (("source", "label"),)),
}
# metric -> (help, [(label name, Series field)], bounds)
HISTOGRAMS = {
    "celery_task_runtime": ("Seconds from start to success or failure.", TASK_LABELS, buckets.TASK_SECONDS),
    "claw_task_queue_wait_seconds": (
        "Seconds from publish (or eta) to a worker starting the task.",
        (("queue", "queue"),),
        buckets.TASK_SECONDS,
    ),
    "gen_ai_client_token_usage": (
        "Tokens per saved reply, by type (input: prompt, output: completion).",
        (("model", "model"), ("token_type", "label")),
        buckets.TOKENS,
    ),
    "gen_ai_client_operation_duration_seconds": (
        "Seconds a provider call took (error_type empty when it answered).",
        (("model", "model"), ("error_type", "label")),
        buckets.OPERATION_SECONDS,
    ),
    "gen_ai_server_time_to_first_token_seconds": (
        "Seconds to the first token of a reply (replies are not streamed: the whole answer).",
        (("model", "model"),),
        buckets.FIRST_TOKEN_SECONDS,
    ),
}
SOURCES = ("database", "broker", "workers")


class ScrapeCollector(Collector):
    def collect(self):
        up: dict[str, bool] = {}
        families = []
        for source, read in (("broker", self._broker), ("workers", self._workers)):
            try:
                families.extend(read())
                up[source] = True
            except Exception:  # a scrape answers with what it has: count and log the source's failure
                logger.warning("metrics: could not read the %s", source, exc_info=True)
                up[source] = False
        try:
            errors = {Series("claw_scrape_errors_total", label=s): 1 for s, ok in up.items() if not ok}
            add(errors)
            families.extend(self._counters(totals()))
            up["database"] = True
        except Exception:
            logger.warning("metrics: could not read the database", exc_info=True)
            up["database"] = False
        source_up = GaugeMetricFamily("claw_scrape_source_up", "1 when this scrape read the source.", labels=["source"])
        for source in SOURCES:
            source_up.add_metric([source], 1.0 if up.get(source) else 0.0)
        families.append(source_up)
        return families

    # --- from the counters table ------------------------------------------------------------
    @staticmethod
    def _counters(values: Mapping[Series, float | Decimal]):
        by_metric: dict[str, dict[Series, float]] = defaultdict(dict)
        for series, value in values.items():
            by_metric[series.metric][series] = float(value)
        for metric, (help_text, labels) in COUNTERS.items():
            family = CounterMetricFamily(metric, help_text, labels=[name for name, _ in labels])
            for series, value in sorted(by_metric.get(metric, {}).items()):
                family.add_metric([getattr(series, field) for _, field in labels], value)
            yield family
        for metric, (help_text, labels, bounds) in HISTOGRAMS.items():
            grouped: dict[tuple, dict[str, float]] = defaultdict(dict)
            for series, value in by_metric.get(metric, {}).items():
                grouped[tuple(getattr(series, field) for _, field in labels)][series.kind] = value
            histogram = HistogramMetricFamily(metric, help_text, labels=[name for name, _ in labels])
            for label_values, kinds in sorted(grouped.items()):
                histogram.add_metric(list(label_values), buckets.cumulative(kinds, bounds), kinds.get("sum", 0.0))
            yield histogram

    # --- from the broker ----------------------------------------------------------------------
    @staticmethod
    def _broker():
        if not broker.is_redis_broker():
            return []
        figures = broker.queue_figures(list(settings.TASK_QUEUES))
        length = GaugeMetricFamily("celery_queue_length", "Messages waiting in the queue.", labels=["queue"])
        age = GaugeMetricFamily(
            "claw_queue_oldest_message_age_seconds",
            "Seconds since the oldest waiting message of the queue was published (0 when empty).",
            labels=["queue"],
        )
        for queue, figure in figures.items():
            length.add_metric([queue], figure.length)
            age.add_metric([queue], figure.oldest_age or 0.0)
        return [length, age]

    # --- workers ------------------------------------------------------------------------------
    @staticmethod
    def _workers():
        discovery = live_workers()
        seen = cache.get(SEEN_KEY) or {}
        now = time.time()
        active = running_per_worker()
        up = GaugeMetricFamily("celery_worker_up", "1 for a live worker, 0 for one seen lately.", labels=["hostname"])
        running = GaugeMetricFamily("celery_worker_tasks_active", "Tasks the worker is running.", labels=["hostname"])
        if discovery.known:
            recent = {name for name, at in seen.items() if now - at < SEEN_FOR}
            for name in sorted(recent | set(discovery.queues)):
                up.add_metric([name], 1.0 if name in discovery.queues else 0.0)
            for name in sorted(set(discovery.queues) | set(active)):
                running.add_metric([name], float(active.get(name, 0)))
        return [up, running]


registry = CollectorRegistry(auto_describe=False)
registry.register(ScrapeCollector())
