"""Flower, as `make run` and compose start it (claw_ai.flower_server), refuses requests without credentials."""

import base64
import contextlib
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.processes import TestProcess, process_env
from tests.support.waiting import wait_for

# Starts Flower processes: left out of make test-fast.
pytestmark = pytest.mark.worker

USER, PASSWORD = "flower-user", "flower-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, credentials: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url)
    if credentials:
        token = base64.b64encode(":".join(credentials).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@contextlib.contextmanager
def flower(*, env: dict[str, str] | None = None):
    """A Flower process on a free loopback port, yielding its URL and pid; always stopped on the way out."""
    port = free_port()
    command = [sys.executable, "-m", "claw_ai.flower_server", "--address=127.0.0.1", f"--port={port}"]
    with TestProcess(command, name=f"flower-{port}", env=process_env(**(env or {}))) as process:

        def serving():
            process.check_running()
            with contextlib.suppress(OSError):
                return get(f"http://127.0.0.1:{port}/healthcheck") == 200
            return False

        wait_for(serving, timeout=60, interval=0.2, what="Flower to answer")
        yield f"http://127.0.0.1:{port}", process.pid


def test_flower_answers_only_with_credentials_taken_from_the_environment():
    # given Flower started as the Procfile and compose start it: credentials in the environment
    with flower(env={"FLOWER_BASIC_AUTH": f"{USER}:{PASSWORD}"}) as (url, pid):
        # when / then: no credentials, wrong ones
        for path in ("/", "/api/workers", "/metrics"):
            assert get(f"{url}{path}") == 401, path
            assert get(f"{url}{path}", (USER, "wrong")) == 401, path
        # when / then: the right ones
        for path in ("/", "/api/workers", "/metrics"):
            assert get(f"{url}{path}", (USER, PASSWORD)) == 200, path
        # the container healthcheck's page says "OK" and nothing more, to anyone
        assert get(f"{url}/healthcheck") == 200
        # and the password is not on the command line, which `ps` shows to every user
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
        assert "claw_ai.flower_server" in command_line
        assert PASSWORD not in command_line
