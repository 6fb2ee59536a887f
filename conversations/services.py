"""Writes of the chat domain: conversations, submitting an AI reply, and saving it.

The prompt is built in conversations.prompts and the provider called in
conversations.provider_calls; this module saves what goes in and what comes out.

`conversation_generate_reply` is what the Celery task `generate_ai_response` runs. It is safe to
run twice for one task id (late acks redeliver a task whose worker died): the user message and
the reply are unique per (task id, role), and a reply already saved is returned, not regenerated.
"""

import contextlib
import functools
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from claw_ai.inserts import column_list, insert_fields, insert_values, loaded, placeholders
from conversations.llm import get_provider
from conversations.llm.base import Completion
from conversations.models import Conversation, Message, MessageRole
from conversations.prompts import build_prompt
from conversations.provider_calls import complete_unless_stopped
from conversations.tokens import completion_cost, estimate_tokens
from tasks_app.models import TaskRecord
from tasks_app.services import ensure_below_unfinished_limit, submit_task

TITLE_LENGTH = 80
AI_GENERATION_TASK = "tasks_app.tasks.ai_tasks.generate_ai_response"


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


@functools.cache
def _get_or_create_sql(*, tenant_is_null: bool) -> str:
    meta, quote = Conversation._meta, connection.ops.quote_name
    table, fields = quote(meta.db_table), column_list(meta.concrete_fields)
    public_id = quote(meta.get_field("public_id").column)
    tenant = quote(meta.get_field("created_by").column)
    # Two shapes, so each SELECT is served by the (tenant, public id) unique index.
    same_tenant = f"{tenant} IS NULL" if tenant_is_null else f"{tenant} = %s"
    return (
        f"WITH new AS (INSERT INTO {table} ({column_list(insert_fields(Conversation))}) "
        f"VALUES ({placeholders(Conversation)}) ON CONFLICT ({tenant}, {public_id}) DO NOTHING RETURNING {fields}) "
        f"SELECT {fields}, true FROM new UNION ALL "
        f"SELECT {fields}, false FROM {table} WHERE {same_tenant} AND {public_id} = %s"
    )


def conversation_get_or_create(*, public_id: str, user_id: str, tenant_id: int | None) -> tuple[Conversation, bool]:
    """The tenant's conversation `public_id` and whether it is new (created for `user_id` when missing).

    Like get_or_create, but one statement in autocommit (get_or_create takes a SELECT, then
    BEGIN, INSERT and COMMIT for a new one: four round trips on every submit).
    """
    new = Conversation(public_id=public_id, user_id=user_id, created_by_id=tenant_id)
    tenant = [] if tenant_id is None else [tenant_id]
    with connection.cursor() as cursor:
        cursor.execute(_get_or_create_sql(tenant_is_null=tenant_id is None), [*insert_values(new), *tenant, public_id])
        row = cursor.fetchone()
    if row is None:
        # Another transaction inserted it and committed while this INSERT waited on it, after
        # this statement's snapshot: a new statement sees the row.
        return Conversation.objects.of_tenant(tenant_id).get(public_id=public_id), False
    return loaded(Conversation, Conversation._meta.concrete_fields, row[:-1]), row[-1]


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
    submitted_by,
) -> TaskRecord:
    """Send the AI reply generation for one conversation turn.

    The conversation is the caller's (its tenant's): an unknown one is created for `user_id`,
    one of another chat user raises ConversationForbidden, and a caller at the unfinished-task
    limit TooManyUnfinishedTasks. The task carries the tenant, so the worker finds the same
    conversation and the tenant's own knowledge.
    """
    ensure_below_unfinished_limit(user=submitted_by)
    conversation_for_generation(conversation_id=conversation_id, user_id=user_id, requested_by=submitted_by)
    return submit_task(
        task_name=AI_GENERATION_TASK,
        kwargs={
            "conversation_id": conversation_id,
            "user_message": user_message,
            "temperature": temperature,
            "user_id": user_id,
            "tenant_id": submitted_by.pk,
            "callback_url": callback_url,
        },
        priority=priority,
        countdown=countdown,
        eta=eta,
        submitted_by=submitted_by,
    )


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
) -> dict:
    """Save the user's message, ask the provider, save and return the reply.

    The conversation is the tenant's `tenant_id` (the API user the task was submitted for; None
    for a task sent from code); the knowledge the prompt draws on is that tenant's too.

    `retried_task_ids` are the tasks this one retries (a retry through the API or the admin has a
    new id): a question one of them saved and nobody answered is this task's question too, so
    the conversation does not show it twice. `should_stop` is polled while the provider works;
    when it turns true the wait ends with GenerationCancelled and nothing more is saved.
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
        provider = get_provider()
        prompt = build_prompt(conversation, question)
        completion = complete_unless_stopped(provider, prompt, temperature=temperature, should_stop=should_stop)
        reply = _save_reply(conversation, completion, task_id=task_id)
    return reply_result(reply)


def reply_result(reply: Message) -> dict:
    """The task's result document (the shape the seed fixes, plus the model and message id)."""
    return {
        "conversation_id": reply.conversation.public_id,
        "response": reply.content,
        "tokens": {"prompt": reply.prompt_tokens, "completion": reply.completion_tokens, "total": reply.total_tokens},
        "cost": float(reply.cost),
        "model": reply.model,
        "message_id": reply.pk,
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
    saved = {message.role: message for message in Message.objects.filter(task_id=task_id)}
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
    message = Message.objects.create(
        conversation=conversation,
        role=MessageRole.USER,
        content=content,
        prompt_tokens=estimate_tokens(content),
        task_id=task_id,
    )
    update: dict[str, object] = {"updated_at": timezone.now()}
    if not conversation.title:
        update["title"] = content[:TITLE_LENGTH]
    Conversation.objects.filter(pk=conversation.pk).update(**update)
    return message


def _save_reply(conversation: Conversation, completion: Completion, *, task_id: str) -> Message:
    cost = completion_cost(
        model=completion.model, prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens
    )
    reply = _create_once(
        lambda: Message.objects.create(
            conversation=conversation,
            role=MessageRole.ASSISTANT,
            content=completion.text,
            model=completion.model,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            cost=cost,
            task_id=task_id,
        ),
        task_id=task_id,
        role=MessageRole.ASSISTANT,
    )
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now())
    return reply
