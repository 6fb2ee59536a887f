"""The prompt of an AI reply: instructions, the tenant's best knowledge passages, recent history, the question."""

from django.conf import settings

from conversations import queries
from conversations.knowledge import knowledge_relevant_chunks
from conversations.llm.base import ChatMessage
from conversations.models import Conversation, Message, MessageRole
from conversations.tokens import estimate_tokens

# Earlier messages looked at when filling the history budget.
HISTORY_SCAN_LIMIT = 200


def build_prompt(conversation: Conversation, question: Message) -> list[ChatMessage]:
    """System instructions, the best knowledge passages, recent history within budget, the question."""
    prompt = [ChatMessage("system", settings.LLM_SYSTEM_PROMPT)]
    chunks = knowledge_relevant_chunks(
        tenant_id=conversation.created_by_id,
        user_id=conversation.user_id,
        text=question.content,
        limit=settings.KNOWLEDGE_CHUNKS_PER_PROMPT,
    )
    if chunks:
        passages = "\n".join(
            # document_title: a column of the search's raw query, not a model field.
            f"[{number}] ({chunk.document_title}) {chunk.content}"  # type: ignore[attr-defined]
            for number, chunk in enumerate(chunks, 1)
        )
        prompt.append(
            ChatMessage("system", f"Passages from the user's knowledge base; use them when they help:\n{passages}")
        )
    return [*prompt, *_recent_history(conversation, before=question), ChatMessage("user", question.content)]


def _recent_history(conversation: Conversation, *, before: Message) -> list[ChatMessage]:
    """The newest earlier messages whose estimated tokens fit LLM_HISTORY_TOKEN_BUDGET, oldest first."""
    budget = settings.LLM_HISTORY_TOKEN_BUDGET
    kept: list[ChatMessage] = []
    earlier = queries.messages_before(conversation_id=conversation.pk, before_id=before.pk, limit=HISTORY_SCAN_LIMIT)
    for role, content in earlier:
        if role == MessageRole.ASSISTANT and not content:
            # A reply that never wrote a word (the budget ran out before it started):
            # an empty assistant turn tells the model nothing, and some providers refuse it.
            continue
        cost = estimate_tokens(content)
        if cost > budget:
            break
        budget -= cost
        kept.append(ChatMessage(role, content))
    return kept[::-1]
