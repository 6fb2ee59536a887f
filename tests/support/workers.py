"""Real Celery workers for end-to-end tests, run as subprocesses against the test database."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from django.conf import settings
from django.db import connection

from claw_ai.celery import celery_app
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = ROOT / ".devdata" / "test-logs"


PR_SET_PDEATHSIG = 1


def stop_with_test_run() -> None:
    """In the child: a warm shutdown when the test process dies without stopping it (Linux).

    Workers run in their own session (so a Ctrl-C reaches pytest first), which also means a
    killed pytest would leave them running; the parent-death signal closes that gap.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def test_database_url() -> str:
    """The URL of the database pytest-django created, for processes outside the test run."""
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    host = db.get("HOST") or "127.0.0.1"
    return f"postgres://{auth}@{host}:{db.get('PORT') or 5432}/{db['NAME']}"


def process_env(**overrides: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "claw_ai.settings.test",
        "DATABASE_URL": test_database_url(),
        "PYTHONUNBUFFERED": "1",
        **overrides,
    }


class Worker:
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
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{self.name.split('@')[0]}.log"
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
        self.log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=process_env(**(env or {})),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=stop_with_test_run,
        )

    def wait_ready(self, timeout: float = 60) -> Worker:
        def answers():
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited ({self.process.returncode}); log:\n{self.log_text()}")
            return celery_app.control.ping(destination=[self.name], timeout=0.5)

        wait_for(answers, timeout=timeout, what=f"worker {self.name} to answer ping")
        return self

    def kill(self) -> None:
        """SIGKILL the worker and its pool: a node crash, with no chance to hand tasks back."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def holds_nothing(self) -> bool:
        """True when the worker answers and runs, reserves and holds no task (one reply each)."""
        inspector = celery_app.control.inspect(destination=[self.name], timeout=1)
        for listing in (inspector.active, inspector.reserved, inspector.scheduled):
            replies = listing()
            if replies is None or self.name not in replies or replies[self.name]:
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
        if self.process.poll() is None and not graceful:
            for queue in self.queues:
                celery_app.control.cancel_consumer(queue, destination=[self.name], reply=True, timeout=1)
            if self.holds_nothing():
                self.kill()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # warm shutdown
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        else:
            # The pool children of a killed main process may outlive it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()
