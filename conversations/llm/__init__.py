"""LLM providers behind one interface (conversations.llm.base.LLMProvider), chosen by settings."""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from conversations.llm.base import LLMProvider


def get_provider() -> LLMProvider:
    """A fresh provider for one request, as LLM_PROVIDER names it."""
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
