"""One provider call of an AI reply, abandoned as soon as the task is cancelled."""

import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import connection

from conversations.llm import discard_provider
from conversations.llm.base import ChatMessage, Completion, LLMProvider
from conversations.signals import provider_call_finished

# How often a task waiting on the provider checks whether it was cancelled (seconds).
CANCEL_POLL_INTERVAL = 0.5


class GenerationCancelled(Exception):
    """The task was cancelled while it waited on the provider."""


def complete_unless_stopped(
    provider: LLMProvider, prompt: list[ChatMessage], *, temperature: float, should_stop: Callable[[], bool]
) -> Completion:
    """Run the provider call in a helper thread while this thread watches for cancellation.

    Why a thread: the SDK call blocks for up to LLM_TIMEOUT and cannot be interrupted from
    inside. Waiting here in short slices lets the task notice a cancellation within
    CANCEL_POLL_INTERVAL, and keeps the main thread free to receive Celery's soft time limit
    (a signal, delivered to the main thread only). On either, the request in flight is abandoned
    (the client is closed; the thread's next task builds a new one); the daemon thread ends at the
    latest when the request times out.
    (Short provider timeouts in a loop would not do: a long answer would never finish.)
    """
    outcome: dict[str, object] = {}
    done = threading.Event()

    def call() -> None:
        started = time.monotonic()
        try:
            outcome["completion"] = provider.complete(prompt, temperature=temperature)
        except BaseException as error:  # handed to the waiting thread, which re-raises it
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
                raise GenerationCancelled("the task was cancelled while waiting on the provider")
    except BaseException:
        discard_provider(provider)
        raise
    completion = outcome.get("completion")
    model = completion.model if isinstance(completion, Completion) else getattr(provider, "model", "")
    provider_call_finished.send(
        sender=type(provider), model=model, seconds=outcome["seconds"], error=outcome.get("error")
    )
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return completion  # type: ignore[return-value]
