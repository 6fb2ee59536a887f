"""The text a running task has written so far, for /status to show as `partial`.

A task that produces text piece by piece (the AI reply: conversations.reply_streams) appends
each piece to one Redis string per task; the task system only reads it, knowing nothing of
what wrote it. The key expires with the task's stream, some time after the task ended.
"""

import logging

from redis.exceptions import RedisError

from claw_ai import redis_clients

logger = logging.getLogger(__name__)


def partial_key(task_id: str) -> str:
    return f"claw:task-partial:{task_id}"


def partial_text(*, task_id: str) -> str | None:
    """The text so far, or None when the task keeps none (or Redis cannot be read: /status still answers)."""
    try:
        value = redis_clients.client().get(partial_key(task_id))
    except RedisError:
        logger.warning("could not read the partial text of %s", task_id, exc_info=True)
        return None
    return value.decode() if isinstance(value, bytes) else value
