"""A cheap "was this task cancelled?" for tasks that wait on I/O and poll.

The task record (REVOKED) is the truth, and ClawTask checks it before a task
runs. A task that waits seconds on a provider polls every half second; asking
PostgreSQL each time would keep one database connection per waiting task (100
threads, 100 connections). cancel_task also raises this flag in the cache
(Redis), which costs a waiting task no database connection at all; CancellationWatch
checks the flag often and the record now and then.
"""

import logging
import time

from django.conf import settings
from django.core.cache import cache
from django.db import connection

logger = logging.getLogger(__name__)

# Longer than any task can wait or run (a delayed task is checked against its record anyway).
FLAG_TTL_SECONDS = 24 * 3600


def _key(task_id: str) -> str:
    return f"claw:cancelled:{task_id}"


def flag_cancelled(task_id: str) -> None:
    try:
        cache.set(_key(task_id), 1, FLAG_TTL_SECONDS)
    except Exception:  # the cache is an optimisation: the REVOKED record still stops the task
        logger.warning("could not flag %s as cancelled in the cache", task_id, exc_info=True)


def cancellation_flagged(task_id: str) -> bool:
    try:
        return bool(cache.get(_key(task_id)))
    except Exception:
        logger.warning("could not read the cancellation flag of %s", task_id, exc_info=True)
        return False


class CancellationWatch:
    """`should_stop` for a task waiting on I/O: the cache flag at every poll, the record each second.

    The record check covers a cancellation whose flag never reached the cache. With a connection
    pool, the connection goes back to the pool right after, so waiting costs no held connection.
    """

    RECORD_CHECK_INTERVAL = 1.0

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.next_record_check = 0.0

    def __call__(self) -> bool:
        if not self.task_id:
            return False
        if cancellation_flagged(self.task_id):
            return True
        now = time.monotonic()
        if now < self.next_record_check:
            return False
        self.next_record_check = now + self.RECORD_CHECK_INTERVAL
        from tasks_app.selectors import task_is_cancelled

        cancelled = task_is_cancelled(task_id=self.task_id)
        if settings.DB_POOL_MAX_SIZE:
            connection.close()
        return cancelled
