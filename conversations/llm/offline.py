"""The embedded provider: answers with no key and no network, deterministically.

It lets `make run` and the tests exercise the whole path (prompt, history, knowledge, tokens,
cost, live replies) without a real model. Its model name says it is offline, so nobody mistakes
its answers. It streams its answer word by word, LLM_OFFLINE_STREAM_DELAY_MS apart (0: at once),
so a chat page shows a live reply the way a real model writes one.
"""

import re
import threading
from collections.abc import Callable

from django.conf import settings

from conversations.llm.base import ChatMessage, Completion, ProviderUnavailable
from conversations.tokens import estimate_tokens

OFFLINE_MODEL = "offline-echo"
# A word with the spaces after it (or spaces alone at the start): the pieces add up to the text.
WORD = re.compile(r"\S+\s*|\s+")


class OfflineProvider:
    name = "offline"

    def __init__(self) -> None:
        self._closed = threading.Event()

    def answer(self, messages: list[ChatMessage]) -> str:
        question = messages[-1].content if messages else ""
        earlier = sum(1 for message in messages[:-1] if message.role in ("user", "assistant"))
        knowledge = sum(message.content.count("\n[") for message in messages if message.role == "system")
        return (
            f"[offline model] You said: {question}\n"
            f"(No language model is configured; set LLM_PROVIDER=openai to get real answers. "
            f"This prompt carried {earlier} earlier messages and {knowledge} knowledge passages.)"
        )

    def stream(
        self,
        messages: list[ChatMessage],
        *,
        temperature: float,
        on_text: Callable[[str], None],
        max_tokens: int | None = None,
    ) -> Completion:
        text = self.answer(messages)
        delay = settings.LLM_OFFLINE_STREAM_DELAY_MS / 1000
        for index, word in enumerate(WORD.findall(text)):
            # The pause comes between words; close() (a cancellation) ends it at once.
            if index and delay and self._closed.wait(delay):
                raise ProviderUnavailable("offline provider closed while streaming")
            on_text(word)
        return Completion(
            text=text,
            model=OFFLINE_MODEL,
            prompt_tokens=sum(estimate_tokens(message.content) for message in messages),
            # A cap (max_tokens, from a budget) bounds what is counted, as a real model stops there.
            completion_tokens=min(estimate_tokens(text), max_tokens or estimate_tokens(text)),
            tokens_estimated=True,
        )

    def close(self) -> None:
        self._closed.set()
