"""Real Celery workers for end-to-end tests, run as subprocesses against the test database."""

from __future__ import annotations

import contextlib
import sys
import uuid
from typing import TYPE_CHECKING

from django.conf import settings

from claw_ai.celery import celery_app
from tests.support.processes import LOG_DIR, TestProcess, process_env
from tests.support.waiting import wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator

# The session's worker on all four queues (tests/conftest.py), once a test of this process started it.
session_worker: Worker | None = None


@contextlib.contextmanager
def session_worker_not_consuming(queue: str) -> Iterator[None]:
    """The session's worker, if running, leaves `queue` alone meanwhile (a test looks at the queue)."""
    worker = session_worker
    if worker is None:
        yield
        return
    assert celery_app.control.cancel_consumer(queue, destination=[worker.name], reply=True, timeout=5)
    try:
        yield
    finally:
        celery_app.control.add_consumer(queue, destination=[worker.name], reply=True, timeout=5)


class Worker(TestProcess):
    """One `celery worker` process; stop() (or the fixture) always ends it."""

    def __init__(
        self,
        *,
        queues=None,
        concurrency: int | None = 4,
        pool: str | None = "prefork",
        name: str | None = None,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name or f"test-{uuid.uuid4().hex[:8]}@localhost"
        self.queues = list(queues or settings.TASK_QUEUES)
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "claw_ai",
            "worker",
            "-n",
            self.name,
            "-Q",
            ",".join(self.queues),
            # None: the settings decide (CELERY_WORKER_POOL / CELERY_WORKER_CONCURRENCY), as in make run.
            *(["-c", str(concurrency)] if concurrency is not None else []),
            *(["-P", pool] if pool is not None else []),
            "-I",
            "tests.support.tasks",
            "-l",
            "info",
            "--without-gossip",
            # Mingle costs a second per start, and would copy the revoked ids of the workers already
            # running: a test worker knows only what it was told itself (tests rely on that).
            "--without-mingle",
            *extra_args,
        ]
        log_path = LOG_DIR / f"{self.name.split('@')[0]}.log"
        super().__init__(command, name=self.name, env=process_env(**(env or {})), log_path=log_path)

    def wait_ready(self, timeout: float = 60) -> Worker:
        def answers():
            self.check_running()
            return celery_app.control.ping(destination=[self.name], timeout=0.5)

        wait_for(answers, timeout=timeout, what=f"worker {self.name} to answer ping")
        return self

    def holds_nothing(self) -> bool:
        """True when the worker answers and runs, reserves and holds no task (one reply each)."""
        inspector = celery_app.control.inspect(destination=[self.name], timeout=1)
        for listing in (inspector.active, inspector.reserved, inspector.scheduled):
            replies = listing()
            if replies is None or self.name not in replies or replies[self.name]:
                return False
        return True

    def _stop_consuming(self) -> bool:
        """Cancel the worker's consumers; False when it does not answer (e.g. on another broker)."""
        for queue in self.queues:
            if not celery_app.control.cancel_consumer(queue, destination=[self.name], reply=True, timeout=1):
                return False
        return True

    def stop(self, timeout: float = 30, *, graceful: bool = True) -> None:
        """End the worker: a warm shutdown, or (not graceful) a kill once it holds no message.

        A warm shutdown takes 2-4 s on this machine (the prefork pool is joined, then the
        interpreter exits), and a test that is over needs none of it. A kill is safe once the
        worker consumes nothing and holds nothing; otherwise its late-acked messages would sit in
        the broker's unacked hash until the visibility timeout, so a busy worker still gets the
        warm shutdown, which hands them back.
        """
        if self.process.poll() is None and not graceful and self._stop_consuming() and self.holds_nothing():
            self.kill()
        super().stop(timeout, whole_group=False)  # SIGTERM to the main process: a warm shutdown
