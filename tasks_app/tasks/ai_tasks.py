"""AI reply generation (queue `ai_high_priority`)."""

import logging

from celery import shared_task, signals, states
from celery.exceptions import Ignore, SoftTimeLimitExceeded
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.db import close_old_connections

from conversations import llm, reply_streams
from conversations.admission import reply_ended
from conversations.llm.base import ProviderUnavailable
from conversations.provider_calls import GenerationCancelled
from conversations.services import conversation_generate_reply
from tasks_app import cluster_limits, selectors
from tasks_app.cancellation import CancellationWatch
from tasks_app.cluster_limits import CapacityUnavailable
from tasks_app.publishing import HEADER_RETRY_OF
from tasks_app.tasks.base import BaseTaskWithRetry

logger = logging.getLogger(__name__)

AI_TASK_NAME = "tasks_app.tasks.ai_tasks.generate_ai_response"


@signals.worker_init.connect(dispatch_uid="tasks_app.tasks.ai_tasks.warm_up_provider")
def warm_up_provider(**_kwargs) -> None:
    # Sent in the worker's main process before its pool starts: threads share the imports, and
    # prefork children inherit them. No database or network work here (children must not
    # inherit connections).
    llm.warm_up()


@signals.task_postrun.connect(dispatch_uid="tasks_app.tasks.ai_tasks.hand_on_the_turn")
def hand_on_the_turn(task=None, task_id=None, state=None, kwargs=None, **_kwargs) -> None:
    # However the reply ended (success, failure, cancellation, even before it ran), the chat
    # user's and the conversation's next waiting replies may go; a RETRY is still in hand.
    if task is not None and task.name == AI_TASK_NAME and state != states.RETRY and task_id:
        kwargs = kwargs or {}
        try:
            user_id = kwargs.get("user_id")
            reply_ended(task_id=task_id, tenant_id=kwargs.get("tenant_id"), user_id=user_id and str(user_id))
        finally:
            # This runs after tasks_app.connections gave the task's connection back: give back the
            # one reply_ended took too, or each idle thread would keep one out of the pool.
            close_old_connections()


class AIGenerationTimeout(Exception):
    """The reply took longer than the task's soft time limit."""


class AIGenerationTask(BaseTaskWithRetry):
    """Retries provider failures itself (honouring Retry-After); ends the reply's live stream and
    sends the callback, if one was asked for, once the task succeeded or failed for good."""

    abstract = True
    autoretry_for = ()
    # A cancelled reply closes its provider call, saves what it wrote and ends its stream itself
    # (conversations.provider_calls), on any pool: terminating the process would lose that.
    stops_itself_when_cancelled = True

    def after_return(self, status, retval, task_id, args, kwargs, einfo):
        # Runs after the result backend stored the outcome, so the status document is final.
        if status == states.SUCCESS:
            reply_streams.finish(task_id, reply_streams.DONE)
        elif status == states.FAILURE:
            reply_streams.finish(task_id, reply_streams.ERROR)
        callback_url = (kwargs or {}).get("callback_url")
        if callback_url and status in (states.SUCCESS, states.FAILURE):
            from tasks_app.tasks.notification_tasks import send_webhook

            send_webhook.apply_async(kwargs={"task_id": task_id, "callback_url": callback_url})


@shared_task(
    bind=True,
    base=AIGenerationTask,
    name=AI_TASK_NAME,
    soft_time_limit=300,
    time_limit=600,
)
def generate_ai_response(
    self,
    conversation_id: str,
    user_message: str,
    temperature: float = 0.7,
    user_id: str | None = None,
    callback_url: str | None = None,
    tenant_id: int | None = None,
    capacity_waits: int = 0,
) -> dict:
    """Generate and save the assistant's reply to `user_message` (conversations.services).

    `tenant_id` is the API user the conversation belongs to (the API sets it); a task sent from
    code without one works in the conversations made from code. `capacity_waits` counts the times
    the task was re-queued to wait for shared capacity (provider limits, the task rate).
    """
    task_id = self.request.id or ""
    # A retry through the API or the admin is a new task whose message names the record it retries.
    retry_of = getattr(self.request, HEADER_RETRY_OF, None)
    try:
        # "At most N a minute" (AI_TASK_RATE_LIMIT) for the whole cluster, not per worker.
        cluster_limits.take_task_rate(self.name, wait_seconds=settings.LLM_CAPACITY_WAIT_SECONDS)
        with CancellationWatch(task_id) as should_stop:
            return conversation_generate_reply(
                conversation_id=conversation_id,
                user_message=user_message,
                temperature=temperature,
                user_id=user_id,
                tenant_id=tenant_id,
                task_id=task_id,
                retried_task_ids=selectors.retried_task_ids(record_id=retry_of),
                should_stop=should_stop,
                attempt=self.request.retries + 1,
            )
    except CapacityUnavailable as waiting:
        # Shared capacity is taken: give the worker slot back and come again when it may be free.
        # Waiting is not failing: it does not count against max_retries (the kwarg counts the waits).
        logger.info("AI task %s re-queued in %.1f s: %s", task_id, waiting.retry_after, waiting)
        raise self.retry(
            exc=waiting,
            countdown=max(0.5, waiting.retry_after),
            kwargs={**self.request.kwargs, "capacity_waits": capacity_waits + 1},
            max_retries=self.request.retries + 1,
        ) from None
    except GenerationCancelled:
        # The record is REVOKED already; Ignore leaves it so and writes nothing more.
        logger.info("AI task %s cancelled while waiting on the provider", task_id)
        raise Ignore from None
    except ProviderUnavailable as error:
        # 429: wait as long as the provider asks; timeouts, connection errors, 5xx: exponential
        # backoff with full jitter, capped like BaseTaskWithRetry. Past max_retries Celery raises
        # `error` itself, so the task fails with the provider's message.
        countdown = error.retry_after
        if countdown is None:
            countdown = get_exponential_backoff_interval(
                factor=1, retries=self.request.retries, maximum=self.retry_backoff_max, full_jitter=True
            )
        if self.request.retries < self.max_retries + capacity_waits:
            # Live readers see the wait; the next attempt's stream starts with a reset.
            reply_streams.mark_retrying(task_id)
        raise self.retry(
            exc=error,
            countdown=min(countdown, settings.TASK_RETRY_BACKOFF_MAX),
            max_retries=self.max_retries + capacity_waits,
        ) from error
    except SoftTimeLimitExceeded:
        limit = self.request.timelimit[1] if self.request.timelimit else None
        limit = limit or self.soft_time_limit
        raise AIGenerationTimeout(
            f"the AI reply took longer than the soft time limit ({limit} s); the provider call was abandoned"
        ) from None
