"""The embedded provider: answers with no key and no network, deterministically.

It lets `make run` and the tests exercise the whole path (prompt, history, knowledge, tokens,
cost) without a real model. Its model name says it is offline, so nobody mistakes its answers.
"""

from conversations.llm.base import ChatMessage, Completion
from conversations.tokens import estimate_tokens

OFFLINE_MODEL = "offline-echo"


class OfflineProvider:
    name = "offline"

    def complete(self, messages: list[ChatMessage], *, temperature: float, max_tokens: int | None = None) -> Completion:
        question = messages[-1].content if messages else ""
        earlier = sum(1 for message in messages[:-1] if message.role in ("user", "assistant"))
        knowledge = sum(message.content.count("\n[") for message in messages if message.role == "system")
        text = (
            f"[offline model] You said: {question}\n"
            f"(No language model is configured; set LLM_PROVIDER=openai to get real answers. "
            f"This prompt carried {earlier} earlier messages and {knowledge} knowledge passages.)"
        )
        return Completion(
            text=text,
            model=OFFLINE_MODEL,
            prompt_tokens=sum(estimate_tokens(message.content) for message in messages),
            # A cap (max_tokens, from a budget) bounds what is counted, as a real model stops there.
            completion_tokens=min(estimate_tokens(text), max_tokens or estimate_tokens(text)),
        )

    def close(self) -> None:
        pass
