"""Real `celery beat` processes for end-to-end tests (the settings' scheduler: the leased one)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid

from tests.support.processes import LOG_DIR, ROOT, process_env, stop_with_test_run


class Beat:
    """One `celery beat` process; stop() (or the fixture) always ends it."""

    def __init__(self, *, env: dict[str, str] | None = None, extra_args: tuple[str, ...] = ()) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"beat-{uuid.uuid4().hex[:8]}.log"
        self.log = self.log_path.open("w")  # closed in stop
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "claw_ai", "beat", "-l", "info", "--pidfile=", *extra_args],
            cwd=ROOT,
            env=process_env(**(env or {})),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=stop_with_test_run,  # noqa: PLW1509 (the parent-death signal is set in the child only)
        )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 15) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()
