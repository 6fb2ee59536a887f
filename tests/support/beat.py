"""Real `celery beat` processes for end-to-end tests (the settings' scheduler: the leased one)."""

from __future__ import annotations

import sys
import uuid

from tests.support.processes import TestProcess, process_env


class Beat(TestProcess):
    """One `celery beat` process; stop() (or the fixture) always ends it."""

    def __init__(self, *, env: dict[str, str] | None = None, extra_args: tuple[str, ...] = ()) -> None:
        command = [sys.executable, "-m", "celery", "-A", "claw_ai", "beat", "-l", "info", "--pidfile=", *extra_args]
        super().__init__(command, name=f"beat-{uuid.uuid4().hex[:8]}", env=process_env(**(env or {})))

    def stop(self, timeout: float = 15) -> None:
        super().stop(timeout, whole_group=False)  # SIGTERM to beat itself: it releases its lease
