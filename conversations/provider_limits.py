"""The provider account's limits, kept by the whole cluster (tasks_app.cluster_limits).

LLM_MAX_CONCURRENT_CALLS, LLM_REQUESTS_PER_MINUTE and LLM_TOKENS_PER_MINUTE are the account's,
not a worker's: every worker draws from the same Redis counters. A call holds a lease for as long
as it runs (a dead worker's lease expires); a 429, or an answer saying nothing is left
(x-ratelimit-remaining-* of 0), pauses every worker until the provider's reset time, instead of
each task discovering the limit on its own.

`provider_capacity()` is the one hook, around the provider call:

    with provider_capacity(prompt_tokens=...) as call:
        completion = ...            # the call
        call.used(completion)       # corrects the token estimate, reads the rate-limit headers

A task that cannot get capacity within LLM_CAPACITY_WAIT_SECONDS gets CapacityUnavailable
(with `retry_after`) and is re-queued by the task with that countdown.
"""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from typing import TYPE_CHECKING

from django.conf import settings

from conversations.llm.base import Completion, ProviderRateLimited
from tasks_app import cluster_limits
from tasks_app.cluster_limits import Capacity, CapacityUnavailable, Lease

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["CapacityUnavailable", "ProviderCall", "provider_capacity", "provider_limits"]

logger = logging.getLogger(__name__)

# Completion tokens reserved for a reply before the provider reports its usage (a reply's
# typical length; the reservation is corrected on release).
EXPECTED_COMPLETION_TOKENS = 500
# Pause after a 429 that names no time to wait.
DEFAULT_PAUSE_SECONDS = 1.0
# "6m0s", "1.5s", "20ms": OpenAI's x-ratelimit-reset-* durations.
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}


def provider_limits() -> Capacity:
    return Capacity(
        name="llm",
        max_concurrent=settings.LLM_MAX_CONCURRENT_CALLS,
        max_requests=settings.LLM_REQUESTS_PER_MINUTE
        and _per_window(settings.LLM_REQUESTS_PER_MINUTE, settings.LLM_RATE_WINDOW_SECONDS),
        max_tokens=settings.LLM_TOKENS_PER_MINUTE
        and _per_window(settings.LLM_TOKENS_PER_MINUTE, settings.LLM_RATE_WINDOW_SECONDS),
        window_seconds=settings.LLM_RATE_WINDOW_SECONDS,
        lease_seconds=settings.LLM_CAPACITY_LEASE_SECONDS,
    )


def _per_window(per_minute: int, window_seconds: float) -> int:
    return max(1, int(per_minute * window_seconds / 60))


class ProviderCall:
    """One call's hold on the provider's capacity."""

    def __init__(self, capacity: Capacity, lease: Lease) -> None:
        self.capacity = capacity
        self.lease = lease

    def used(self, completion: Completion) -> None:
        self.lease.tokens_used = completion.total_tokens
        _pause_if_exhausted(self.capacity, completion.rate_limit_headers)


@contextmanager
def provider_capacity(*, prompt_tokens: int, max_tokens: int | None = None) -> Iterator[ProviderCall]:
    """Hold a share of the provider's capacity for one call; raises CapacityUnavailable past the wait."""
    capacity = provider_limits()
    reserved = prompt_tokens + (max_tokens or EXPECTED_COMPLETION_TOKENS)
    lease = cluster_limits.acquire(capacity, tokens=reserved, wait_seconds=settings.LLM_CAPACITY_WAIT_SECONDS)
    call = ProviderCall(capacity, lease)
    try:
        yield call
    except ProviderRateLimited as error:
        pause = error.retry_after or _reset_seconds(error.headers) or DEFAULT_PAUSE_SECONDS
        cluster_limits.pause(capacity, pause)
        logger.warning("provider answered 429: every worker waits %.1f s before its next call", pause)
        raise
    finally:
        cluster_limits.release(lease, tokens_used=lease.tokens_used)


def _pause_if_exhausted(capacity: Capacity, headers: dict) -> None:
    """The provider says nothing is left until its reset: nobody calls before then."""
    for kind in ("requests", "tokens"):
        remaining = headers.get(f"x-ratelimit-remaining-{kind}")
        if remaining is None:
            continue
        try:
            exhausted = float(remaining) <= 0
        except ValueError:
            continue
        seconds = _duration(headers.get(f"x-ratelimit-reset-{kind}"))
        if exhausted and seconds:
            cluster_limits.pause(capacity, seconds)
            logger.info("provider reports no %s left: every worker waits %.1f s", kind, seconds)


def _reset_seconds(headers: dict) -> float | None:
    resets = [_duration(headers.get(f"x-ratelimit-reset-{kind}")) for kind in ("requests", "tokens")]
    return max((seconds for seconds in resets if seconds), default=None)


def _duration(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(value)
    return sum(float(amount) * _UNIT_SECONDS[unit] for amount, unit in parts) or None
