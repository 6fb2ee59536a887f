"""The web application under a real ASGI server (uvicorn, as `make run` serves it), for tests.

A subprocess on a free loopback port against the test database, so a test talks HTTP to it the
way a browser does and an open stream is really served by an event loop.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys

from tests.support.processes import LOG_DIR, ROOT, process_env, stop_with_test_run
from tests.support.waiting import wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AsgiServer:
    def __init__(self, *, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"asgi-{self.port}.log"
        self.log = self.log_path.open("w")  # closed in stop
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "claw_ai.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-access-log",
            ],
            cwd=ROOT,
            env=process_env(**(env or {})),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=stop_with_test_run,  # noqa: PLW1509 (the parent-death signal is set in the child only)
        )

    def wait_ready(self, timeout: float = 60) -> AsgiServer:
        def listening() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"uvicorn exited ({self.process.returncode}):\n{self.log_path.read_text()}")
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(listening, timeout=timeout, interval=0.1, what="uvicorn to listen")
        return self

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.log.close()
