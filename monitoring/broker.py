"""Queue lengths and the age of each queue's oldest message, read from the Redis broker.

kombu's Redis transport keeps one list per priority step ("queue", "queue:1" … "queue:9" with
this system's ten steps and ":" separator; claw_ai.broker). A publish LPUSHes, a worker takes
from the right, so the last element of each list is its oldest message. A queue's length is the
sum of its lists; its oldest message is the oldest of their last elements, dated by its task
record (the publish time, or the last re-send), one indexed query for all queues.

Other brokers (RabbitMQ) are not read: the figures are absent there.
"""

from __future__ import annotations

import json
import time
from bisect import bisect
from dataclasses import dataclass

import redis
from django.db.models import Q

from claw_ai.celery import celery_app
from tasks_app.models import TaskRecord

# A scrape must answer quickly even when the broker does not.
BROKER_TIMEOUT = 0.5

_clients: dict[str, redis.Redis] = {}


@dataclass(frozen=True)
class QueueFigures:
    length: int
    oldest_age: float | None  # seconds; None when the queue is empty (or its oldest has no record)


def _client(url: str) -> redis.Redis:
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis.Redis.from_url(
            url, socket_connect_timeout=BROKER_TIMEOUT, socket_timeout=BROKER_TIMEOUT
        )
    return client


def priority_keys(queue: str) -> list[str]:
    """The Redis lists of `queue`, named as kombu's Channel._q_for_pri names them."""
    options = celery_app.conf.broker_transport_options or {}
    steps = list(options.get("priority_steps") or [0, 3, 6, 9])
    sep = options.get("sep", "\x06\x16")
    keys = []
    for step in steps:
        level = steps[bisect(steps, step) - 1]
        keys.append(f"{queue}{sep}{level}" if level else queue)
    return list(dict.fromkeys(keys))


def is_redis_broker() -> bool:
    return str(celery_app.conf.broker_url or "").startswith(("redis://", "rediss://"))


def queue_figures(queues: list[str]) -> dict[str, QueueFigures]:
    """Each queue's length and oldest message age. Raises redis.RedisError when the broker is down."""
    keys = {queue: priority_keys(queue) for queue in queues}
    with _client(celery_app.conf.broker_url).pipeline(transaction=False) as pipe:
        for queue in queues:
            for key in keys[queue]:
                pipe.llen(key)
                pipe.lindex(key, -1)
        replies = iter(pipe.execute())
    lengths: dict[str, int] = {}
    oldest_ids: dict[str, list[str]] = {}
    for queue in queues:
        lengths[queue], oldest_ids[queue] = 0, []
        for _key in keys[queue]:
            lengths[queue] += int(next(replies))
            task_id = _task_id(next(replies))
            if task_id:
                oldest_ids[queue].append(task_id)
    published = _published_at([task_id for ids in oldest_ids.values() for task_id in ids])
    now = time.time()
    figures = {}
    for queue in queues:
        times = [published[task_id] for task_id in oldest_ids[queue] if task_id in published]
        figures[queue] = QueueFigures(lengths[queue], max(0.0, now - min(times)) if times else None)
    return figures


def _task_id(raw: bytes | None) -> str | None:
    if not raw:
        return None
    try:
        return json.loads(raw)["headers"]["id"]
    except (ValueError, KeyError, TypeError):
        return None


def _published_at(task_ids: list[str]) -> dict[str, float]:
    if not task_ids:
        return {}
    rows = TaskRecord.objects.filter(Q(task_id__in=task_ids)).values_list("task_id", "created_at", "resent_at")
    return {task_id: max(created, resent or created).timestamp() for task_id, created, resent in rows}
