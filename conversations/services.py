"""Writes of the chat domain: conversations, submitting an AI reply, and saving it.

The prompt is built in conversations.prompts and the provider called in
conversations.provider_calls; this module saves what goes in and what comes out.

`conversation_generate_reply` is what the Celery task `generate_ai_response` runs. It is safe to
run twice for one task id (late acks redeliver a task whose worker died): the user message and
the reply are unique per (task id, role), and a reply already saved is returned, not regenerated.
"""

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from claw_ai.inserts import insert
from conversations import queries
from conversations.admission import WaitingRecord, admit_and_publish
from conversations.budgets import (
    FINISH_BUDGET,
    BudgetExceeded,
    budget_check,
    budget_release,
    budget_reserve,
    capped,
)
from conversations.llm import get_provider
from conversations.llm.base import Completion
from conversations.models import Conversation, Message, MessageRole
from conversations.prompts import build_prompt
from conversations.provider_calls import GenerationCancelled, complete_unless_stopped
from conversations.provider_limits import provider_capacity
from conversations.reply_streams import ReplyStreamWriter
from conversations.tokens import completion_cost, estimate_tokens
from tasks_app.models import UNFINISHED_STATES, TaskRecord
from tasks_app.publishing import prepare
from tasks_app.services import (
    TaskStateConflict,
    cancel_task,
    ensure_below_unfinished_limit,
)

logger = logging.getLogger(__name__)

TITLE_LENGTH = 80
AI_GENERATION_TASK = "tasks_app.tasks.ai_tasks.generate_ai_response"
# The finish_reason of a reply whose task was cancelled while it was being written.
FINISH_CANCELLED = "cancelled"


class ConversationForbidden(Exception):
    """The conversation belongs to another chat user or another API user."""


def new_conversation_id() -> str:
    return f"conv_{uuid.uuid4().hex[:16]}"


class ConversationExists(Exception):
    """The tenant already has a conversation of that id."""


def conversation_create(
    *, user_id: str, created_by=None, public_id: str | None = None, title: str = ""
) -> Conversation:
    """A new conversation of the tenant `created_by`. Raises ConversationExists for a taken id."""
    try:
        with transaction.atomic():
            return Conversation.objects.create(
                public_id=public_id or new_conversation_id(), user_id=user_id, created_by=created_by, title=title
            )
    except IntegrityError:
        raise ConversationExists(public_id) from None


def conversation_get_or_create(*, public_id: str, user_id: str, tenant_id: int | None) -> tuple[Conversation, bool]:
    """The tenant's conversation `public_id` and whether it is new (created for `user_id` when missing).

    Like get_or_create, but one statement in autocommit (get_or_create takes a SELECT, then
    BEGIN, INSERT and COMMIT for a new one: four round trips on every submit).
    """
    stored = queries.insert_or_get_conversation(
        Conversation(public_id=public_id, user_id=user_id, created_by_id=tenant_id)
    )
    if stored is None:
        # Another transaction inserted it and committed while this INSERT waited on it, after
        # this statement's snapshot: a new statement sees the row.
        return Conversation.objects.of_tenant(tenant_id).get(public_id=public_id), False
    return stored


def conversation_for_generation(*, conversation_id: str, user_id: str, requested_by) -> Conversation:
    """The caller's conversation a reply is asked for; created (for `user_id`) when unknown.

    Only the caller's own tenant is looked in: another tenant's conversation of the same id is
    another conversation. Raises ConversationForbidden when it belongs to another chat user.
    """
    conversation, created = conversation_get_or_create(
        public_id=conversation_id, user_id=user_id, tenant_id=requested_by.pk
    )
    if not created and conversation.user_id != user_id:
        raise ConversationForbidden(f"conversation {conversation_id} belongs to another chat user")
    return conversation


def submit_ai_generation(
    *,
    conversation_id: str,
    user_message: str,
    temperature: float,
    user_id: str,
    callback_url: str | None = None,
    priority: int | None = None,
    countdown: float | None = None,
    eta: datetime | None = None,
    supersede: bool = False,
    submitted_by,
    queue: str | None = None,
) -> TaskRecord:
    """Send the AI reply generation for one conversation turn.

    The conversation is the caller's (its tenant's): an unknown one is created for `user_id`,
    one of another chat user raises ConversationForbidden, a caller at the unfinished-task limit
    TooManyUnfinishedTasks, and one past a budget (its own or the chat user's) BudgetExceeded.
    The task carries the tenant, so the worker finds the same conversation and the tenant's own
    knowledge.

    `supersede`: the user sent a new message while a reply was still being written (or queued):
    those replies of the conversation are cancelled first (a reply being written keeps what it
    wrote, finish_reason "cancelled"). Their ids are in the record's `superseded_task_ids`.
    """
    ensure_below_unfinished_limit(user=submitted_by)
    budget_check(tenant_id=submitted_by.pk, user_id=user_id)
    conversation_for_generation(conversation_id=conversation_id, user_id=user_id, requested_by=submitted_by)
    # The replies this message supersedes are cancelled first: the new one then waits its turn behind
    # them only until they have stopped.
    superseded = replies_cancel_unfinished(conversation_id=conversation_id, tenant=submitted_by) if supersede else []
    kwargs = {
        "conversation_id": conversation_id,
        "user_message": user_message,
        "temperature": temperature,
        "user_id": user_id,
        "tenant_id": submitted_by.pk,
        "callback_url": callback_url,
    }
    if countdown and eta is None:
        eta = timezone.now() + timedelta(seconds=countdown)
    # One chat user's replies a few at a time, a conversation's one at a time in order: the rest
    # wait in PostgreSQL, their record saying why, and are sent when their turn comes.
    task_id = str(uuid.uuid4())
    # Admitted, its record is written in the admission's transaction (one commit) and sent after it.
    _waiting_for, record = admit_and_publish(
        task_id=task_id,
        tenant_id=submitted_by.pk,
        user_id=user_id,
        conversation_id=conversation_id,
        priority=priority,
        record=WaitingRecord(AI_GENERATION_TASK, kwargs, queue or settings.QUEUE_AI, eta, submitted_by),
        prepare=lambda: prepare(
            task_name=AI_GENERATION_TASK,
            kwargs=kwargs,
            queue=queue,
            priority=priority,
            eta=eta,
            submitted_by_id=submitted_by.pk,
            task_id=task_id,
        ),
    )
    record.superseded_task_ids = superseded
    return record


def replies_cancel_unfinished(*, conversation_id: str, tenant) -> list[str]:
    """Cancel the tenant's queued or running replies in the conversation; the ids of those cancelled."""
    unfinished = TaskRecord.objects.filter(
        conversation_id=conversation_id, submitted_by=tenant, task_name=AI_GENERATION_TASK, state__in=UNFINISHED_STATES
    ).order_by("created_at")
    cancelled = []
    for record in unfinished:
        try:
            cancel_task(record=record, by=tenant)
        except TaskStateConflict:
            continue  # it finished meanwhile: nothing to supersede
        cancelled.append(record.task_id)
    return cancelled


def conversation_generate_reply(
    *,
    conversation_id: str,
    user_message: str,
    temperature: float = 0.7,
    user_id: str | None = None,
    tenant_id: int | None = None,
    task_id: str = "",
    retried_task_ids: Sequence[str] = (),
    should_stop: Callable[[], bool] = lambda: False,
    attempt: int = 1,
) -> dict:
    """Save the user's message, ask the provider, save and return the reply.

    The conversation is the tenant's `tenant_id` (the API user the task was submitted for; None
    for a task sent from code); the knowledge the prompt draws on is that tenant's too.

    `retried_task_ids` are the tasks this one retries (a retry through the API or the admin has a
    new id): a question one of them saved and nobody answered is this task's question too, so
    the conversation does not show it twice. `should_stop` is polled while the provider works;
    when it turns true the provider's stream is closed, the text so far is saved as the reply
    (finish_reason "cancelled") and GenerationCancelled is raised. The reply is streamed to
    live readers as it is written (conversations.reply_streams); `attempt` is the task's
    attempt number (1 for the first run), written on the stream when it restarts a reply.
    """
    conversation, question, reply = _save_user_message(
        conversation_id=conversation_id,
        user_message=user_message,
        user_id=user_id,
        tenant_id=tenant_id,
        task_id=task_id,
        retried_task_ids=retried_task_ids,
    )
    if reply is None:
        reply = _generate_reply(
            conversation,
            question,
            temperature=temperature,
            task_id=task_id,
            tenant_id=tenant_id,
            should_stop=should_stop,
            attempt=attempt,
        )
    return reply_result(reply)


def _generate_reply(
    conversation: Conversation,
    question: Message,
    *,
    temperature: float,
    task_id: str,
    tenant_id: int | None,
    should_stop: Callable[[], bool],
    attempt: int,
) -> Message:
    """Ask the provider, streaming its reply to live readers, and save the reply (or what a cancellation left).

    The reply first reserves its share of the budgets, which caps its length, then a share of the
    provider account's capacity, which holds for the whole cluster (CapacityUnavailable past the
    wait). A budget used up since the submit (other replies spent it meanwhile) ends the turn
    with an empty reply of finish_reason "budget": see _refused_by_budget.
    """
    provider = get_provider()
    prompt = build_prompt(conversation, question)
    prompt_tokens = sum(estimate_tokens(message.content) for message in prompt)
    reservation = task_id or f"direct-{uuid.uuid4().hex}"
    try:
        cap = budget_reserve(
            task_id=reservation, tenant_id=tenant_id, user_id=conversation.user_id, prompt_tokens=prompt_tokens
        )
    except BudgetExceeded as refused:
        return _refused_by_budget(conversation, provider, refused, task_id=task_id, attempt=attempt)
    try:
        return _stream_reply(
            conversation,
            capped(provider, cap),
            prompt,
            prompt_tokens=prompt_tokens,
            cap=cap,
            temperature=temperature,
            task_id=task_id,
            should_stop=should_stop,
            attempt=attempt,
        )
    finally:
        if cap is not None:
            budget_release(task_id=reservation)


def _stream_reply(
    conversation: Conversation,
    provider,
    prompt: list,
    *,
    prompt_tokens: int,
    cap: int | None,
    temperature: float,
    task_id: str,
    should_stop: Callable[[], bool],
    attempt: int,
) -> Message:
    stream = ReplyStreamWriter(task_id) if task_id else None
    if stream is not None:
        stream.start(attempt=attempt)
    started = time.monotonic()
    try:
        with provider_capacity(prompt_tokens=prompt_tokens, max_tokens=cap) as call:
            completion = complete_unless_stopped(
                provider, prompt, temperature=temperature, should_stop=should_stop, listener=stream
            )
            call.used(completion)
    except GenerationCancelled:
        if stream is not None:
            partial = stream.close()
            if partial:  # a reply cancelled before its first word leaves no message
                timing = _timing(stream, started, partial)
                cancelled = _cancelled_completion(provider, prompt, partial)
                _save_reply(conversation, cancelled, task_id=task_id, timing=timing)
            stream.cancelled()
        raise
    except BaseException:
        if stream is not None:
            stream.close()  # a retry (or the failure) is written by the task
        raise
    if stream is not None:
        stream.close()
    return _save_reply(conversation, completion, task_id=task_id, timing=_timing(stream, started, completion.text))


def _refused_by_budget(
    conversation: Conversation, provider, refused: BudgetExceeded, *, task_id: str, attempt: int
) -> Message:
    """The reply of a turn whose budget ran out before its first word: no text, 0 tokens, finish_reason "budget".

    It is the limit of a reply the budget cut while it was written (CappedProvider), and ends
    the same way: the task succeeds with finish_reason "budget", live readers get `done`, and
    the conversation shows the question as answered, by the budget. Failing the task instead
    would leave the question unanswered in the history; a later message asks again (prompts
    skip such empty replies).
    """
    logger.info("AI reply %s not written: %s", task_id or "(direct)", refused)
    stream = ReplyStreamWriter(task_id) if task_id else None
    if stream is not None:
        stream.start(attempt=attempt)  # the `done` that follows (the task's after_return) ends it
        stream.close()
    nothing = Completion(
        text="",
        model=getattr(provider, "model", "") or getattr(provider, "name", ""),
        prompt_tokens=0,
        completion_tokens=0,
        finish_reason=FINISH_BUDGET,
    )
    return _save_reply(conversation, nothing, task_id=task_id, timing=_timing(None, 0.0, ""))


def _cancelled_completion(provider, prompt: list, partial: str) -> Completion:
    """The tokens a cancelled reply used, estimated: a provider reports usage only at the end."""
    return Completion(
        text=partial,
        model=getattr(provider, "model", "") or getattr(provider, "name", ""),
        prompt_tokens=sum(estimate_tokens(message.content) for message in prompt),
        completion_tokens=estimate_tokens(partial),
        tokens_estimated=True,
        finish_reason=FINISH_CANCELLED,
    )


def _timing(stream: ReplyStreamWriter | None, started: float, text: str) -> dict:
    """time_to_first_token_ms and tokens_per_second of a streamed reply (None where no text came)."""
    if stream is None or stream.first_text_at is None:
        return {"time_to_first_token_ms": None, "tokens_per_second": None}
    writing = time.monotonic() - stream.first_text_at
    tokens = estimate_tokens(text)
    return {
        "time_to_first_token_ms": round((stream.first_text_at - started) * 1000),
        "tokens_per_second": round(tokens / writing, 2) if writing > 0 and tokens else None,
    }


def reply_result(reply: Message) -> dict:
    """The task's result document (the shape the seed fixes, plus the model, message id and timing)."""
    return {
        "conversation_id": reply.conversation.public_id,
        "response": reply.content,
        "tokens": {"prompt": reply.prompt_tokens, "completion": reply.completion_tokens, "total": reply.total_tokens},
        "tokens_estimated": reply.tokens_estimated,
        "cost": float(reply.cost),
        "model": reply.model,
        "message_id": reply.pk,
        "finish_reason": reply.finish_reason,
        "time_to_first_token_ms": reply.time_to_first_token_ms,
        "tokens_per_second": reply.tokens_per_second,
    }


def _save_user_message(
    *,
    conversation_id: str,
    user_message: str,
    user_id: str | None,
    tenant_id: int | None,
    task_id: str,
    retried_task_ids: Sequence[str] = (),
) -> tuple[Conversation, Message, Message | None]:
    """The conversation, this task's user message, and its reply if an earlier run saved one.

    Each step is a statement of its own (autocommit), not one transaction: an AI task holds a
    pooled connection meanwhile, and every BEGIN, SAVEPOINT and COMMIT is one more round trip,
    each waiting its turn for the GIL among the worker's threads. Nothing is lost by it: a run
    that stops halfway is repeated by the task's next delivery, which finds what was saved.
    """
    conversation, _created = conversation_get_or_create(
        public_id=conversation_id, user_id=user_id or "", tenant_id=tenant_id
    )
    if user_id and conversation.user_id != user_id:
        raise ConversationForbidden(f"conversation {conversation_id} belongs to another user, not {user_id}")
    if not task_id:
        return conversation, _add_user_message(conversation, user_message, task_id=""), None
    # An earlier run of this task may have saved the question, or the reply too: one query for both.
    saved = {message.role: message for message in queries.messages_of_task(task_id)}
    question = (
        saved.get(MessageRole.USER)
        or _unanswered_question(conversation, retried_task_ids)
        or _create_once(
            lambda: _add_user_message(conversation, user_message, task_id=task_id),
            task_id=task_id,
            role=MessageRole.USER,
        )
    )
    return conversation, question, saved.get(MessageRole.ASSISTANT)


def _unanswered_question(conversation: Conversation, task_ids: Sequence[str]) -> Message | None:
    """The question the nearest of `task_ids` saved in `conversation`, unless one of them got a reply."""
    if not task_ids:
        return None
    messages = list(Message.objects.filter(conversation=conversation, task_id__in=task_ids))
    if any(message.role == MessageRole.ASSISTANT for message in messages):
        return None  # answered before (e.g. cancelled after the reply): the retry asks again
    questions = {message.task_id: message for message in messages if message.role == MessageRole.USER}
    return next((questions[task_id] for task_id in task_ids if task_id in questions), None)


def _create_once(create: Callable[[], Message], *, task_id: str, role: str) -> Message:
    """create() this task's message of `role`, or take the one another delivery saved first.

    Two deliveries of a task can run at once (a re-sent message whose original resurfaced); the
    unique (task_id, role) lets only one message of each role in. In autocommit mode the refused
    INSERT needs no savepoint; inside a caller's transaction it does.
    """
    try:
        with transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext():
            return create()
    except IntegrityError:
        return Message.objects.get(task_id=task_id, role=role)


def _add_user_message(conversation: Conversation, content: str, *, task_id: str) -> Message:
    message = insert(
        Message(
            conversation=conversation,
            role=MessageRole.USER,
            content=content,
            prompt_tokens=estimate_tokens(content),
            task_id=task_id,
        )
    )
    queries.conversation_touched(pk=conversation.pk, title=None if conversation.title else content[:TITLE_LENGTH])
    return message


def _save_reply(conversation: Conversation, completion: Completion, *, task_id: str, timing: dict) -> Message:
    cost = completion_cost(
        model=completion.model, prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens
    )
    reply = _create_once(
        lambda: insert(
            Message(
                conversation=conversation,
                role=MessageRole.ASSISTANT,
                content=completion.text,
                model=completion.model,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                cost=cost,
                task_id=task_id,
                tokens_estimated=completion.tokens_estimated,
                finish_reason=completion.finish_reason or "",
                **timing,
            )
        ),
        task_id=task_id,
        role=MessageRole.ASSISTANT,
    )
    queries.conversation_touched(pk=conversation.pk)
    return reply
