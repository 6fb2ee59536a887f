"""The one interface every LLM provider implements, and the errors it may raise.

Errors say what the caller should do, not which SDK raised them:
- ProviderRateLimited: retry after `retry_after` seconds (the provider's Retry-After), or back off.
- ProviderUnavailable: timeouts, connection errors, 5xx — retry with backoff.
- ProviderRejected: any other 4xx — retrying would only fail again; the message says why.
The Celery task (tasks_app.tasks.ai_tasks) turns the first two into retries.

Every provider streams: `stream()` hands each piece of the reply to `on_text` as it arrives (from
the thread that runs the call) and returns the whole Completion at the end. An error raised
after some pieces were handed over is raised all the same; the caller knows what it showed.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system", "user" or "assistant"
    content: str


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    raw_usage: dict = field(default_factory=dict)
    # The provider's x-ratelimit-* answer headers (lower-case names), for conversations.provider_limits.
    rate_limit_headers: dict = field(default_factory=dict)
    # True when the provider reported no usage and the token counts are estimates
    # (conversations.tokens.estimate_tokens).
    tokens_estimated: bool = False
    finish_reason: str = "stop"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ProviderError(Exception):
    """The provider did not answer."""


class ProviderUnavailable(ProviderError):
    """Timeout, connection error or 5xx: the same request may well succeed later."""

    retry_after: float | None = None


class ProviderRateLimited(ProviderUnavailable):
    """429: wait as long as the provider asks (None: it did not say)."""

    def __init__(self, message: str, *, retry_after: float | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        # The answer's retry-after and x-ratelimit-* headers (lower-case names), for provider_limits.
        self.headers = headers or {}


class ProviderRejected(ProviderError):
    """A 4xx other than 429: the request itself is wrong (bad model, key, input)."""


class LLMProvider(Protocol):
    name: str

    def stream(
        self,
        messages: list[ChatMessage],
        *,
        temperature: float,
        on_text: Callable[[str], None],
        max_tokens: int | None = None,
    ) -> Completion:
        """Hand each piece of the reply to `on_text` as it arrives; return the whole of it.
        `max_tokens`: the most completion tokens to write (a budget's cap); None: the model's own limit."""
        ...

    def close(self) -> None:
        """Abandon any request in flight (called from another thread on cancellation)."""
