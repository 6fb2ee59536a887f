"""Hand the tasks of a dead worker node back to the queue ("lifeline").

With late acknowledgement on Redis, a message a worker has taken (running,
reserved, or waiting for its eta) sits in kombu's `unacked` hash until the worker
acknowledges it. If the worker's node dies, Redis hands the message out again
only after the visibility timeout, which must stay long (longer than any
countdown) so delayed tasks are not delivered twice. Oban's lifeline and Sidekiq
Pro's reliable fetch solve the same problem by rescuing jobs whose owner is gone.

This job asks every live worker what it holds (active, reserved, scheduled) and
restores to its queue every unacknowledged message, older than a grace period,
that no live worker claims. Tasks are safe to run twice, so a rescue that races
a worker which did not answer in time costs a duplicate run, never a lost task.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from claw_ai.celery import celery_app
from tasks_app import records

logger = logging.getLogger(__name__)

# What the lifeline asks every worker: are you alive, and what do you run, reserve, hold for an eta.
INSPECTIONS = ("ping", "active", "reserved", "scheduled")


@dataclass
class RescueReport:
    live_workers: list[str] = field(default_factory=list)
    rescued_task_ids: list[str] = field(default_factory=list)
    skipped: str = ""


def task_ids_held_by_live_workers() -> tuple[list[str], set[str]]:
    """The live workers, and the ids of every task they run, hold reserved or wait to run (eta).

    A broadcast without a destination waits its whole timeout (LIFELINE_INSPECT_TIMEOUT), however
    soon the workers answer: the four calls run in parallel, so the whole takes one timeout.
    """
    with ThreadPoolExecutor(max_workers=len(INSPECTIONS)) as pool:
        live, *listings = pool.map(_inspect, INSPECTIONS)
    held: set[str] = set()
    for replies in listings:
        for entries in replies.values():
            for entry in entries:
                request = entry.get("request", entry)  # `scheduled` wraps the request
                if request.get("id"):
                    held.add(request["id"])
    return sorted(live), held


def _inspect(method: str) -> dict[str, Any]:
    inspector = celery_app.control.inspect(timeout=settings.LIFELINE_INSPECT_TIMEOUT)
    return getattr(inspector, method)() or {}


def rescue_orphaned_tasks(*, grace_seconds: float = 60) -> RescueReport:
    """Restore unacknowledged messages that no live worker holds; return what was done."""
    report = RescueReport()
    if not celery_app.conf.broker_url.startswith(("redis://", "rediss://")):
        report.skipped = "the broker is not Redis (RabbitMQ returns a dead consumer's messages itself)"
        return report
    report.live_workers, held = task_ids_held_by_live_workers()
    with celery_app.connection_for_write() as connection:
        channel = connection.default_channel
        # The Redis transport's channel (the broker was checked above); StdChannel has neither.
        client, qos = channel.client, channel.qos  # type: ignore[attr-defined]
        older_than = time.time() - grace_seconds
        for tag in client.zrange(qos.unacked_index_key, 0, older_than, byscore=True):
            raw = client.hget(qos.unacked_key, tag)
            if raw is None:
                continue  # acknowledged since we listed it
            message = json.loads(raw)[0]
            task_id = (message.get("headers") or {}).get("id")
            if task_id in held:
                continue
            qos.restore_by_tag(tag, client)
            if task_id:
                report.rescued_task_ids.append(task_id)
    if report.rescued_task_ids:
        records.note_rescued(report.rescued_task_ids)
        logger.warning(
            "lifeline: re-queued %d task(s) no live worker held: %s",
            len(report.rescued_task_ids),
            ", ".join(report.rescued_task_ids),
        )
    return report
