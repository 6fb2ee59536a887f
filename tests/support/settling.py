"""Leave no task running before the database of a transactional test is emptied.

A task still running when the tables are emptied writes rows into the next test (or, with
Django's TRUNCATE, deadlocks with it). With late acks every message a worker holds is in kombu's
`unacked` hash, so an empty hash means no worker is busy: the common case costs one call.

A message held for later (an eta an hour away) stays in that hash until its time comes, and so
does one of a worker a test killed; once a settle has revoked or outlived such entries, later
settles skip them while they stay harmless (no eta, or one still well ahead), instead of paying
two remote-control timeouts (about 1 s) after every following test of the process.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import TYPE_CHECKING

from claw_ai.celery import celery_app
from tests.support.waiting import wait_for

if TYPE_CHECKING:
    import redis

UNACKED = "unacked"  # kombu's Redis transport: delivery tag -> [message, exchange, routing key]
# A delayed message due sooner than this may start running during the next test: settle again.
DUE_SOON_SECONDS = 120

# Delivery tags a settle left in the hash (held for later and revoked, or held by a dead worker),
# with their eta (epoch seconds; None when the message has none).
_settled: dict[str, float | None] = {}


def _eta(entry: bytes) -> float | None:
    try:
        eta = json.loads(entry)[0]["headers"].get("eta")
        return datetime.fromisoformat(eta).timestamp() if eta else None
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def _harmless(tag: str) -> bool:
    if tag not in _settled:
        return False
    eta = _settled[tag]
    return eta is None or eta > time.time() + DUE_SOON_SECONDS


def settle_workers(client: redis.Redis, timeout: float = 30) -> None:
    """Drop queued messages, revoke delayed ones, wait for running ones."""
    tags = [tag.decode() for tag in client.hkeys(UNACKED)]
    if all(_harmless(tag) for tag in tags):
        return
    celery_app.control.purge()
    inspector = celery_app.control.inspect(timeout=0.5)
    scheduled = {worker: entries for worker, entries in (inspector.scheduled() or {}).items() if entries}
    if scheduled:
        delayed = [entry["request"]["id"] for entries in scheduled.values() for entry in entries]
        celery_app.control.revoke(delayed)  # every worker: one may get the message back later
        # and the holders' replies: a worker writes REVOKED to the result backend before it answers,
        # and that write must land before the flush, not in the next test's tables.
        celery_app.control.revoke(delayed, destination=list(scheduled), reply=True, timeout=5)
    wait_for(
        lambda: not any((inspector.active() or {}).values()),
        timeout=timeout,
        what="workers to finish their running tasks before the database is flushed",
    )
    _settled.clear()
    for tag, entry in client.hgetall(UNACKED).items():
        _settled[tag.decode()] = _eta(entry)
