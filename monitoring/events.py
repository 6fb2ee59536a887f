"""Counting the events PostgreSQL does not see: messages a worker received, provider calls.

They are batched in memory (monitoring.counters.PendingCounts) and written about once a second,
so neither a worker's consumer nor an AI task waits on a metrics write.
"""

from celery import signals
from django.dispatch import receiver

from conversations.llm.base import ProviderRateLimited
from conversations.signals import provider_call_finished
from monitoring import buckets
from monitoring.counters import PendingCounts, Series, histogram

pending = PendingCounts()


@signals.task_received.connect(dispatch_uid="monitoring.count_received")
def count_received(request=None, **_kwargs) -> None:
    # In the worker's main process, once per message it takes from the broker.
    delivery_info = getattr(request, "delivery_info", None) or {}
    name, queue = getattr(request, "name", "") or "", delivery_info.get("routing_key") or ""
    pending.add(Series("celery_task_received_total", name, queue))


@receiver(provider_call_finished, dispatch_uid="monitoring.count_provider_call")
def count_provider_call(
    *, model: str, seconds: float, error: BaseException | None, first_token_seconds: float | None = None, **_kwargs
) -> None:
    error_type = type(error).__name__ if error is not None else ""
    observed = histogram(
        "gen_ai_client_operation_duration_seconds", seconds, buckets.OPERATION_SECONDS, model=model, label=error_type
    )
    if error is None and first_token_seconds is not None:
        # Replies are streamed: the first piece of text, not the whole answer.
        observed |= histogram(
            "gen_ai_server_time_to_first_token_seconds", first_token_seconds, buckets.FIRST_TOKEN_SECONDS, model=model
        )
    if isinstance(error, ProviderRateLimited):
        observed[Series("claw_llm_rate_limited_total", model=model)] = 1
    for series, value in observed.items():
        pending.add(series, value)


@signals.worker_shutdown.connect(dispatch_uid="monitoring.flush_on_shutdown")
@signals.worker_process_shutdown.connect(dispatch_uid="monitoring.flush_on_process_shutdown")
def flush_on_shutdown(**_kwargs) -> None:
    pending.flush()
