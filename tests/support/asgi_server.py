"""The web application under a real ASGI server (uvicorn, as `make run` serves it), for tests.

A subprocess on a free loopback port against the test database, so a test talks HTTP to it the
way a browser does and an open stream is really served by an event loop.
"""

from __future__ import annotations

import signal
import socket
import sys

from tests.support.processes import TestProcess, process_env
from tests.support.waiting import wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AsgiServer(TestProcess):
    def __init__(self, *, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "claw_ai.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-access-log",
        ]
        super().__init__(command, name=f"asgi-{self.port}", env=process_env(**(env or {})))

    def wait_ready(self, timeout: float = 60) -> AsgiServer:
        def listening() -> bool:
            self.check_running()
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(listening, timeout=timeout, interval=0.1, what="uvicorn to listen")
        return self

    def stop(self, timeout: float = 15) -> None:
        super().stop(timeout, sig=signal.SIGINT, whole_group=False)  # uvicorn's own Ctrl-C: open streams end
