"""LLM providers behind one interface (conversations.llm.base.LLMProvider), chosen by settings."""

import logging
import threading

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from conversations.llm.base import LLMProvider

logger = logging.getLogger(__name__)

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


def warm_up() -> None:
    """Build (and close) one provider, so the imports and one-time set-up it needs are done.

    A worker calls this before it consumes: the OpenAI SDK takes ~0.3 s of CPU to import and
    ~40 ms more for its first client. Left to the first tasks, a threads worker started with a
    full queue ran its first wave of AI tasks ~1 s slower, every thread waiting on the import
    lock while one imported under the GIL (bench/RESULTS.md, measurement 2). A provider that
    cannot be built is logged here and fails its tasks as before, so the worker still starts.
    """
    try:
        _new_provider().close()
    except Exception:
        logger.exception("could not build the LLM provider (LLM_PROVIDER=%r)", settings.LLM_PROVIDER)


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
