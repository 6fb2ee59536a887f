"""Flower, as `make run` and compose start it, refuses requests without credentials."""

import base64
import contextlib
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.support.waiting import wait_for
from tests.support.workers import LOG_DIR, ROOT, process_env

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
def flower(*, extra_args: tuple[str, ...] = (), env: dict[str, str] | None = None):
    """A Flower process on a free loopback port; always stopped on the way out."""
    port = free_port()
    command = [sys.executable, "-m", "celery", "-A", "claw_ai", "flower", "--address=127.0.0.1", f"--port={port}"]
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"flower-{port}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [*command, *extra_args],
            cwd=ROOT,
            env=process_env(**(env or {})),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:

            def serving():
                if process.poll() is not None:
                    raise AssertionError(f"flower exited ({process.returncode}):\n{log_path.read_text()}")
                with contextlib.suppress(OSError):
                    return get(f"http://127.0.0.1:{port}/healthcheck") == 200
                return False

            wait_for(serving, timeout=60, interval=0.2, what="Flower to answer")
            yield f"http://127.0.0.1:{port}"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


@pytest.mark.parametrize(
    "how",
    [
        {"extra_args": (f"--basic_auth={USER}:{PASSWORD}",)},  # the Procfile of `make run`
        {"env": {"FLOWER_BASIC_AUTH": f"{USER}:{PASSWORD}"}},  # the compose files
    ],
    ids=["make-run-option", "compose-environment"],
)
def test_flower_answers_only_with_credentials(how):
    with flower(**how) as url:
        # when / then: no credentials, wrong ones
        assert get(f"{url}/") == 401
        assert get(f"{url}/api/workers") == 401
        assert get(f"{url}/", (USER, "wrong")) == 401
        # when / then: the right ones
        assert get(f"{url}/", (USER, PASSWORD)) == 200
        assert get(f"{url}/api/workers", (USER, PASSWORD)) == 200
