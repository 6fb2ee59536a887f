"""Any OpenAI-compatible Chat Completions endpoint, through the official `openai` SDK.

OpenAI, DeepSeek, Qwen's compatible mode, a local Ollama or vLLM: only LLM_BASE_URL, LLM_API_KEY
and LLM_MODEL differ. The SDK's own retries are off: the Celery task retries, so a retry is
visible in the task record and bounded by the task's limits, and a cancelled task stops.
"""

import contextlib
import email.utils
import functools
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, cast

import httpx2
import openai

from conversations.llm.base import (
    ChatMessage,
    Completion,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from conversations.tokens import estimate_tokens

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam


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


def rate_limit_headers(headers) -> dict:
    """The answer's retry-after and x-ratelimit-* headers, lower-case (conversations.provider_limits reads them)."""
    return {
        name.lower(): value
        for name, value in headers.items()
        if name.lower() == "retry-after" or name.lower().startswith("x-ratelimit-")
    }


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
        self._lock = threading.Lock()
        self._response: httpx2.Response | None = None  # the streamed response being read, for close()
        self.client = openai.OpenAI(
            base_url=base_url or None,
            # Local servers (Ollama, vLLM) take any key; the SDK insists on one.
            api_key=api_key or "not-needed",
            timeout=timeout,
            max_retries=0,
            # The SDK's default client, sharing the TLS context instead of building its own.
            http_client=openai.DefaultHttpxClient(verify=_tls_context()),
        )

    def stream(  # noqa: C901 (one pass over the provider's chunks; each branch is a chunk kind)
        self,
        messages: list[ChatMessage],
        *,
        temperature: float,
        on_text: Callable[[str], None],
        max_tokens: int | None = None,
    ) -> Completion:
        """Ask for a streamed reply; hand each piece to `on_text`; return the whole of it.

        `max_tokens`: the most completion tokens to write (a budget's cap); None: the model's own limit.

        With `include_usage` the last chunk carries the token usage; a server that sends none
        gets estimated counts, marked `tokens_estimated`.
        """
        pieces: list[str] = []
        model, usage, finish_reason, headers = self.model, None, None, {}
        try:
            # The roles are ChatMessage's ("system", "user", "assistant"): the SDK's per-role dicts.
            sdk_messages = cast(
                "list[ChatCompletionMessageParam]",
                [{"role": message.role, "content": message.content} for message in messages],
            )
            # The SDK sends the request and turns error answers into its exceptions; the chunks are
            # read here as plain JSON (see _chunks for why).
            with self.client.chat.completions.with_streaming_response.create(
                model=self.model,
                messages=sdk_messages,
                temperature=temperature,
                stream=True,
                stream_options={"include_usage": True},
                max_tokens=max_tokens or openai.omit,  # omit: the request leaves the field out
            ) as response:
                headers = rate_limit_headers(response.headers)
                with self._lock:
                    self._response = response.http_response
                for chunk in _chunks(response.iter_lines()):
                    model = chunk.get("model") or model
                    if chunk.get("usage") is not None:
                        usage = chunk["usage"]
                    for choice in chunk.get("choices") or ():
                        finish_reason = choice.get("finish_reason") or finish_reason
                        content = (choice.get("delta") or {}).get("content")
                        if content:
                            pieces.append(content)
                            on_text(content)
        except openai.APITimeoutError as error:
            raise ProviderUnavailable(f"{self.name} provider timed out: {error}") from error
        except openai.APIConnectionError as error:
            raise ProviderUnavailable(f"{self.name} provider unreachable: {error}") from error
        except openai.APIStatusError as error:
            raise _status_error(self.name, error) from error
        except (httpx2.TransportError, StreamError) as error:  # cut off, or an error event inside the stream
            raise ProviderUnavailable(f"{self.name} provider failed while streaming: {error}") from error
        finally:
            with self._lock:
                self._response = None
        if finish_reason is None:
            # The connection ended cleanly but the reply did not: a proxy or server cut it short.
            raise ProviderUnavailable(f"{self.name} provider ended the stream before the reply was complete")
        text = "".join(pieces)
        if not isinstance(usage, dict):
            return Completion(
                text=text,
                model=model,
                prompt_tokens=sum(estimate_tokens(message.content) for message in messages),
                completion_tokens=estimate_tokens(text),
                tokens_estimated=True,
                finish_reason=finish_reason,
                rate_limit_headers=headers,
            )
        return Completion(
            text=text,
            model=model,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            raw_usage=usage,
            finish_reason=finish_reason,
            rate_limit_headers=headers,
        )

    def close(self) -> None:
        """Abandon the reply in flight, from another thread: the provider sees its connection close.

        Closing a socket another thread is blocked reading does not end that read on Linux (nor
        send anything to the server) until data arrives; shutting it down does both at once.
        """
        with self._lock:
            response = self._response
        if response is not None:
            network_stream = response.extensions.get("network_stream")
            sock = network_stream.get_extra_info("socket") if network_stream is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self.client.close()


def _status_error(name: str, error: openai.APIStatusError) -> Exception:
    status, message = error.status_code, _provider_message(error)
    if status == 429:
        retry_after = parse_retry_after(error.response.headers.get("retry-after"))
        return ProviderRateLimited(
            f"{name} provider rate limit (429): {message}",
            retry_after=retry_after,
            headers=rate_limit_headers(error.response.headers),
        )
    if status >= 500 or status == 408:
        return ProviderUnavailable(f"{name} provider error {status}: {message}")
    return ProviderRejected(f"{name} provider rejected the request ({status}): {message}")


class StreamError(Exception):
    """The provider reported an error inside a stream it had begun (an `error` event or chunk)."""


def _chunks(lines: Iterable[str]) -> Iterator[dict]:
    """The JSON chunks of a Chat Completions event stream (Server-Sent Events), until `[DONE]`.

    Read here rather than through the SDK's Stream: it builds a pydantic model of every chunk,
    0.27 ms of CPU per chunk against 0.12 for this, and a reply streams one chunk per token (200
    replies at 30 tokens a second are 6,000 chunks a second on a worker pair: bench/RESULTS.md,
    measurement 6). Errors are told as the SDK tells them: an `error` event, or a chunk that holds
    `error`, raises StreamError with the provider's message.
    """
    event, data = "", []
    for line in lines:
        if line:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "data":
                data.append(value)
            elif field == "event":
                event = value
            continue
        if not data:  # a blank line ends an event; a comment or an empty event has no data
            event = ""
            continue
        payload = "\n".join(data)
        event, kind, data = "", event, []
        if payload.startswith("[DONE]"):
            return
        try:
            chunk = json.loads(payload)
        except ValueError as error:
            raise StreamError(f"an event that is not JSON: {payload[:200]!r}") from error
        if kind == "error" or (isinstance(chunk, dict) and chunk.get("error")):
            raise StreamError(_stream_error_message(chunk))
        if isinstance(chunk, dict):
            yield chunk


def _stream_error_message(chunk) -> str:
    error = chunk.get("error") if isinstance(chunk, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    return message if isinstance(message, str) and message else "An error occurred during streaming"
