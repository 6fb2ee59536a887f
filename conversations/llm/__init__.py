"""LLM providers behind one interface (conversations.llm.base.LLMProvider), chosen by settings."""

import threading

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from conversations.llm.base import LLMProvider

# One provider per thread, kept between requests: building the OpenAI SDK's client costs ~1-2 ms
# of CPU, and a kept client reuses its keep-alive connection to the provider.
_per_thread = threading.local()


def _settings_key() -> tuple:
    names = ("LLM_PROVIDER", "LLM_BASE_URL", "LLM_API_KEY", "LLM_MODEL", "LLM_TIMEOUT")
    return tuple(getattr(settings, name) for name in names)


def get_provider() -> LLMProvider:
    """This thread's provider, as LLM_PROVIDER names it (a new one when the settings changed)."""
    key = _settings_key()
    if getattr(_per_thread, "key", None) != key or _per_thread.provider is None:
        _per_thread.provider = _new_provider()
        _per_thread.key = key
    return _per_thread.provider


def discard_provider(provider: LLMProvider) -> None:
    """Close `provider` (abandoning a request in flight) so this thread builds a new one next time."""
    if getattr(_per_thread, "provider", None) is provider:
        _per_thread.provider = None
    provider.close()


def _new_provider() -> LLMProvider:
    if settings.LLM_PROVIDER == "offline":
        from conversations.llm.offline import OfflineProvider

        return OfflineProvider()
    if settings.LLM_PROVIDER == "openai":
        from conversations.llm.openai_compatible import OpenAICompatibleProvider

        return OpenAICompatibleProvider(
            base_url=settings.LLM_BASE_URL,
            api_key=settings.LLM_API_KEY,
            model=settings.LLM_MODEL,
            timeout=settings.LLM_TIMEOUT,
        )
    raise ImproperlyConfigured(f'LLM_PROVIDER must be "offline" or "openai", not {settings.LLM_PROVIDER!r}')
