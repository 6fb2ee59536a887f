"""A cheap "was this task cancelled?" for tasks that wait on I/O and poll.

The task record (REVOKED) is the truth, and ClawTask checks it before a task runs. cancel_task
also raises a flag in the cache (Redis). A task waiting seconds on a provider has to notice a
cancellation while it waits; with 100 such tasks in one threads worker, each asking Redis and
PostgreSQL on its own would cost hundreds of round trips a second. Instead, one monitor thread
per worker process watches every waiting task of the process: one MGET of their flags every
FLAG_INTERVAL, one query for REVOKED records every RECORD_INTERVAL (the backstop for a flag
that never reached the cache). A waiting task's check reads memory only.
"""

from __future__ import annotations

import logging
import threading
from typing import Self

from django.core.cache import cache
from django.db import close_old_connections, connection

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


class CancellationMonitor:
    """Watches the tasks registered with it; a daemon thread, started on the first watch."""

    FLAG_INTERVAL = 0.25
    RECORD_INTERVAL = 1.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._watchers: dict[str, int] = {}  # task id -> how many watches are open
        self._cancelled: set[str] = set()
        self._thread: threading.Thread | None = None
        self.rounds = 0  # checks done so far (tests wait on it)

    def watch(self, task_id: str) -> None:
        with self._lock:
            idle = not self._watchers
            self._watchers[task_id] = self._watchers.get(task_id, 0) + 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="cancellation-monitor", daemon=True)
                self._thread.start()
            elif idle:
                self._wake.notify()  # a busy monitor finds the new task at its next round

    def unwatch(self, task_id: str) -> None:
        with self._lock:
            left = self._watchers.get(task_id, 0) - 1
            if left > 0:
                self._watchers[task_id] = left
            else:
                self._watchers.pop(task_id, None)
                self._cancelled.discard(task_id)

    def cancelled(self, task_id: str) -> bool:
        return task_id in self._cancelled

    def _run(self) -> None:
        checks_per_record_check = round(self.RECORD_INTERVAL / self.FLAG_INTERVAL)
        while True:
            with self._lock:
                if not self._watchers:
                    # Nothing to watch, perhaps for hours: hold no database connection meanwhile
                    # (without a pool, a kept connection would stay open in this thread).
                    connection.close()
                    while not self._watchers:
                        self._wake.wait()
                watched = list(self._watchers)
            try:
                found = self._flagged(watched)
                if self.rounds % checks_per_record_check == 0:
                    found |= self._revoked(watched)
            except Exception:  # a broken check must not end the monitor; the next one retries
                logger.warning("cancellation check failed", exc_info=True)
                found = set()
            if found:
                with self._lock:
                    self._cancelled |= found & set(self._watchers)
            self.rounds += 1
            with self._lock:
                self._wake.wait(self.FLAG_INTERVAL)

    @staticmethod
    def _flagged(task_ids: list[str]) -> set[str]:
        keys = {_key(task_id): task_id for task_id in task_ids}
        try:
            return {keys[key] for key, value in cache.get_many(list(keys)).items() if value}
        except Exception:
            logger.warning("could not read the cancellation flags", exc_info=True)
            return set()

    @staticmethod
    def _revoked(task_ids: list[str]) -> set[str]:
        from tasks_app import records

        try:
            return records.revoked_among(task_ids)
        finally:
            # Django's rules for a connection between uses: a pooled one goes back to the pool.
            close_old_connections()


_monitor = CancellationMonitor()


class CancellationWatch:
    """`should_stop` for a task waiting on I/O, watched while the `with` block runs:
    `with CancellationWatch(task_id) as should_stop: ...`."""

    def __init__(self, task_id: str, monitor: CancellationMonitor = _monitor) -> None:
        self.task_id = task_id
        self.monitor = monitor

    def __enter__(self) -> Self:
        if self.task_id:
            self.monitor.watch(self.task_id)
        return self

    def __exit__(self, *exc) -> None:
        if self.task_id:
            self.monitor.unwatch(self.task_id)

    def __call__(self) -> bool:
        return bool(self.task_id) and self.monitor.cancelled(self.task_id)
