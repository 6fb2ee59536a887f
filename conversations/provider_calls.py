"""One provider call of an AI reply, streamed to a listener, abandoned as soon as the task is cancelled."""

import threading
import time
from typing import Protocol

from django.conf import settings
from django.db import connection

from conversations.llm import discard_provider
from conversations.llm.base import ChatMessage, Completion, LLMProvider
from conversations.signals import provider_call_finished

# How often a task waiting on the provider checks whether it was cancelled (seconds). The check
# reads memory only (tasks_app.cancellation); with the monitor's 0.25 s round, a cancelled reply
# stops within about half a second.
CANCEL_POLL_INTERVAL = 0.2


class GenerationCancelled(Exception):
    """The task was cancelled while it waited on the provider."""


class TextListener(Protocol):
    """Where the pieces of a streamed reply go (conversations.reply_streams.ReplyStreamWriter)."""

    def text(self, piece: str) -> None:
        """A piece of the reply, called from the thread that reads the provider."""


class _Ignore:
    def text(self, piece: str) -> None:
        pass


def complete_unless_stopped(
    provider: LLMProvider,
    prompt: list[ChatMessage],
    *,
    temperature: float,
    should_stop,
    listener: TextListener | None = None,
) -> Completion:
    """Run the provider call in a helper thread while this thread watches for cancellation.

    Why a thread: the SDK call blocks for up to LLM_TIMEOUT between pieces and cannot be
    interrupted from inside. Waiting here in short slices lets the task notice a cancellation
    within CANCEL_POLL_INTERVAL, and keeps the main thread free to receive Celery's soft time
    limit (a signal, delivered to the main thread only). On either, the request in flight is
    abandoned (the provider closes its connection; the thread's next task builds a new one).
    The pieces reach `listener` from the helper thread as they arrive.
    (Short provider timeouts in a loop would not do: a long answer would never finish.)
    """
    listener = listener or _Ignore()
    outcome: dict[str, object] = {}
    done = threading.Event()
    started = time.monotonic()

    def on_text(piece: str) -> None:
        outcome.setdefault("first_token_seconds", time.monotonic() - started)
        listener.text(piece)

    def call() -> None:
        try:
            outcome["completion"] = provider.stream(prompt, temperature=temperature, on_text=on_text)
        except BaseException as error:  # noqa: BLE001 (handed to the waiting thread, which re-raises it)
            outcome["error"] = error
        finally:
            outcome["seconds"] = time.monotonic() - started
            done.set()

    if settings.DB_POOL_MAX_SIZE:
        # Nothing below touches the database until the reply is saved: give the connection back
        # to the pool while the provider works, so many waiting tasks share a few connections.
        connection.close()
    threading.Thread(target=call, name="llm-request", daemon=True).start()
    try:
        while not done.wait(CANCEL_POLL_INTERVAL):
            if should_stop():
                # Raised inside the try on purpose: the handler below discards the provider on the way out.
                raise GenerationCancelled("the task was cancelled while waiting on the provider")  # noqa: TRY301
    except BaseException:
        discard_provider(provider)
        raise
    completion = outcome.get("completion")
    model = completion.model if isinstance(completion, Completion) else getattr(provider, "model", "")
    provider_call_finished.send(
        sender=type(provider),
        model=model,
        seconds=outcome["seconds"],
        error=outcome.get("error"),
        first_token_seconds=outcome.get("first_token_seconds"),
    )
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return completion  # type: ignore[return-value]
