"""Any OpenAI-compatible Chat Completions endpoint, through the official `openai` SDK.

OpenAI, DeepSeek, Qwen's compatible mode, a local Ollama or vLLM: only LLM_BASE_URL, LLM_API_KEY
and LLM_MODEL differ. The SDK's own retries are off: the Celery task retries, so a retry is
visible in the task record and bounded by the task's limits, and a cancelled task stops.
"""

import email.utils
import functools
import ssl
import time
from typing import cast

import openai
from openai.types.chat import ChatCompletionMessageParam

from conversations.llm.base import (
    ChatMessage,
    Completion,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, parsed.timestamp() - time.time())


def _provider_message(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return error.message


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every provider instance: building one loads the CA bundle, which
    cost ~20 ms of CPU per AI task when each task made its own (bench/RESULTS.md, measurement 2)."""
    return ssl.create_default_context()


class OpenAICompatibleProvider:
    name = "openai"

    def __init__(self, *, base_url: str, api_key: str, model: str, timeout: float) -> None:
        self.model = model
        self.client = openai.OpenAI(
            base_url=base_url or None,
            # Local servers (Ollama, vLLM) take any key; the SDK insists on one.
            api_key=api_key or "not-needed",
            timeout=timeout,
            max_retries=0,
            # The SDK's default client, sharing the TLS context instead of building its own.
            http_client=openai.DefaultHttpxClient(verify=_tls_context()),
        )

    def complete(self, messages: list[ChatMessage], *, temperature: float) -> Completion:
        try:
            response = self.client.chat.completions.create(
                model=self.model,
                # ChatMessage roles are "system", "user" and "assistant": each a message shape of the SDK.
                messages=[
                    cast(ChatCompletionMessageParam, {"role": message.role, "content": message.content})
                    for message in messages
                ],
                temperature=temperature,
            )
        except openai.APITimeoutError as error:
            raise ProviderUnavailable(f"{self.name} provider timed out: {error}") from error
        except openai.APIConnectionError as error:
            raise ProviderUnavailable(f"{self.name} provider unreachable: {error}") from error
        except openai.APIStatusError as error:
            status, message = error.status_code, _provider_message(error)
            if status == 429:
                retry_after = parse_retry_after(error.response.headers.get("retry-after"))
                raise ProviderRateLimited(
                    f"{self.name} provider rate limit (429): {message}", retry_after=retry_after
                ) from error
            if status >= 500 or status == 408:
                raise ProviderUnavailable(f"{self.name} provider error {status}: {message}") from error
            raise ProviderRejected(f"{self.name} provider rejected the request ({status}): {message}") from error
        choice = response.choices[0] if response.choices else None
        usage = response.usage
        return Completion(
            text=(choice.message.content or "") if choice else "",
            model=response.model or self.model,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            raw_usage=usage.model_dump() if usage else {},
        )

    def close(self) -> None:
        self.client.close()
