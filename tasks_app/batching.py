"""Bulk publishing: many tasks, one commit for their records, then their messages.

Outside a transaction every `apply_async` waits for its record's commit, and a commit waits for
PostgreSQL to flush its WAL to disk (bench/ANALYSIS.md, fourth round: 6-10 ms on this machine,
most of a publish). A `group` (and so a chord's header) of N tasks used to pay N commits. Inside
`batch()`, `apply_async` of a task of the system writes nothing and sends nothing: the task is
held, and when the block ends the records of all held tasks are written in one statement and one
commit, then the messages leave on one producer. The rule of tasks_app.publishing stays: no
message leaves before its record is committed; a message that cannot leave has its record
deleted again.

`group.apply_async` runs inside `batch()` (installed below), so a group or a chord publishes in
bulk without the caller asking. Inside a transaction there is nothing to gain (the records commit
with it anyway, and the messages already wait for the commit): `batch()` then holds nothing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celery import canvas
from django.db import connection

from claw_ai.celery import celery_app
from tasks_app import records

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

logger = logging.getLogger(__name__)


@dataclass
class Held:
    """One task held by batch(): its record's values (records.insert_published's) and its send."""

    record: dict[str, Any]
    send: Callable[..., Any]  # send(producer=...) publishes the message


class _Batch:
    def __init__(self) -> None:
        self.held: list[Held] = []


_local = threading.local()


def current() -> _Batch | None:
    """The batch this thread is in, when its tasks may be held (not inside a transaction)."""
    held = getattr(_local, "batch", None)
    return None if held is None or connection.in_atomic_block else held


@contextlib.contextmanager
def batch() -> Iterator[None]:
    """Hold the system's `apply_async` calls made in the block; publish them in bulk when it ends.

    A nested batch() joins the outer one. An exception in the block sends nothing (nothing was
    written). A broker error at the end raises, after the records of the tasks that did not
    leave were deleted.
    """
    if getattr(_local, "batch", None) is not None:
        yield
        return
    _local.batch = held = _Batch()
    try:
        yield
    finally:
        _local.batch = None
    flush(held.held)


def flush(held: list[Held]) -> None:
    """Write the held tasks' records in one statement (one commit), then send their messages."""
    if not held:
        return
    records.insert_published_many([each.record for each in held])
    sent = 0
    try:
        with celery_app.producer_or_acquire() as producer:
            for each in held:
                each.send(producer=producer)
                sent += 1
    except Exception:
        # Nothing of the rest left: no record may claim they are queued.
        records.forget_unsent_many([each.record["task_id"] for each in held[sent:]])
        logger.warning("bulk publish stopped after %d of %d tasks", sent, len(held), exc_info=True)
        raise


_group_apply_async = canvas.group.apply_async


def _group_apply_async_in_batch(self, *args, **kwargs):
    with batch():
        return _group_apply_async(self, *args, **kwargs)


_group_apply_async_in_batch.__wrapped__ = _group_apply_async  # type: ignore[attr-defined]
# Every group of the process (celery.group is celery.canvas.group): its tasks' records in one commit.
canvas.group.apply_async = _group_apply_async_in_batch  # type: ignore[method-assign]
