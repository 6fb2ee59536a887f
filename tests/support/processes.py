"""One launcher for every process the tests start: Celery workers, beat, Flower, web servers, make run, Chromium.

Each runs against the test database with the test settings, in a session of its own (so a
Ctrl-C reaches pytest first), gets SIGTERM when the test process dies (parent-death signal),
writes its output to a log file under .devdata/test-logs, and is ended with its whole process
group, so no pool child or gunicorn worker outlives its test.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Self

import psutil
from django.db import connection

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = ROOT / ".devdata" / "test-logs"

PR_SET_PDEATHSIG = 1

# Set for each test by tests/conftest.py: whether it is marked `worker`. `make test-fast` (-m "not
# worker") promises tests that start no process, so an unmarked test that starts one fails, saying so.
may_start_processes = True


def stop_with_test_run() -> None:
    """In the child: SIGTERM when the test process dies without stopping it (Linux).

    The processes run in their own session (so a Ctrl-C reaches pytest first), which also means
    a killed pytest would leave them running; the parent-death signal closes that gap.
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
    """The environment of a test process: the test settings on the test database, unbuffered output."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "claw_ai.settings.test",
        "DATABASE_URL": test_database_url(),
        "PYTHONUNBUFFERED": "1",
        **overrides,
    }


class TestProcess:
    """One process a test started; stop() (or leaving the `with` block) always ends it and its group."""

    __test__ = False  # not a test class, whatever its name

    def __init__(
        self,
        command: Sequence[str | os.PathLike[str]],
        *,
        name: str,
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
        log_path: Path | None = None,
        pass_fds: Sequence[int] = (),
    ) -> None:
        """Start `command`; `env` is the whole environment (default: process_env()); `pass_fds` stay open in it."""
        if not may_start_processes:
            raise AssertionError(f"this test starts {name} but is not marked `worker` (make test-fast would run it)")
        self.name = name
        self.log_path = log_path or LOG_DIR / f"{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = self.log_path.open("w")  # closed in stop
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env=process_env() if env is None else env,
            stdin=subprocess.DEVNULL,  # in a session of its own, a read of the terminal would stop it
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=pass_fds,
            preexec_fn=stop_with_test_run,  # noqa: PLW1509 (the parent-death signal is set in the child only)
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def check_running(self) -> None:
        """Fail the test, with the log, when the process has exited."""
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited ({self.process.returncode}); log:\n{self.log_text()}")

    def kill(self) -> None:
        """SIGKILL the process and its group: a crash, with no chance to clean up."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 30, *, sig: signal.Signals = signal.SIGTERM, whole_group: bool = True) -> None:
        """Send `sig` to the whole group (or to the main process alone), wait, then kill what is left.

        A shell line or gunicorn wants the signal on the group; a Celery worker wants SIGTERM on its
        main process alone (its warm shutdown ends the pool, which must not be signalled itself).
        """
        members = self._group_members()
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if whole_group:
                    os.killpg(self.process.pid, sig)
                else:
                    self.process.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        # The children of an ended main process may outlive it (pool processes, gunicorn workers).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        psutil.wait_procs(members, timeout=10)
        self.process.wait(10)
        self.log.close()

    def _group_members(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.Error):
            main = psutil.Process(self.process.pid)
            return [main, *main.children(recursive=True)]
        return []

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
