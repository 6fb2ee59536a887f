"""The web server and Flower of `make run`, started from the Procfile through sh as honcho starts them.

Each line runs as written, on a free port chosen as a user would (WEB_PORT, FLOWER_PORT), so a
developer's own `make run` on this machine is never in the way; the test reads the address the
process listens on.
"""

import contextlib
import os
import signal
import socket
import sys
from pathlib import Path

import psutil
import pytest

from tests.support.processes import ROOT, TestProcess, process_env
from tests.support.waiting import wait_for

# Starts the Procfile's web server and Flower: left out of make test-fast.
pytestmark = pytest.mark.worker

FLOWER_PASSWORD = "procfile-flower-password"
# The variable that chooses each line's port.
PORT_VARIABLES = {"web": "WEB_PORT", "flower": "FLOWER_PORT"}


def procfile_line(name: str) -> str:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line and not line.startswith("#"))[name]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening_on(process: psutil.Process, port: int) -> set[str]:
    """The addresses `process` or its children listen on at `port`."""
    addresses = set()
    for member in (process, *process.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):
            for conn in member.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port:
                    addresses.add(conn.laddr.ip)
    return addresses


@contextlib.contextmanager
def procfile_process(name: str, *, bind_host: str | None):
    """The Procfile's `name` line under sh on a free port, yielding the process and its addresses."""
    port = free_port()
    env = process_env(
        DJANGO_SETTINGS_MODULE="claw_ai.settings.development",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        FLOWER_USER="admin",
        FLOWER_PASSWORD=FLOWER_PASSWORD,
        **{PORT_VARIABLES[name]: str(port)},
    )
    env.pop("CLAW_BIND_HOST", None)
    if bind_host is not None:
        env["CLAW_BIND_HOST"] = bind_host
    shell = TestProcess(["/bin/sh", "-c", procfile_line(name)], name=f"procfile-{name}-{port}", env=env)
    process = psutil.Process(shell.pid)
    try:

        def listening():
            shell.check_running()
            return listening_on(process, port)

        addresses = wait_for(listening, timeout=60, interval=0.1, what=f"the Procfile's {name} to listen")
        yield process, addresses
    finally:
        # SIGINT to the group is gunicorn's quick shutdown (SIGTERM waits up to its graceful timeout
        # for booting workers); every process of the group is gone before the next test.
        shell.stop(sig=signal.SIGINT, whole_group=True)


@pytest.mark.parametrize("name", ["web", "flower"])
def test_make_run_listens_on_loopback_only_by_default(name):
    # when started without CLAW_BIND_HOST
    with procfile_process(name, bind_host=None) as (_, addresses):
        # then other machines cannot reach it (development runs with DEBUG on)
        assert addresses == {"127.0.0.1"}


@pytest.mark.parametrize("name", ["web", "flower"])
def test_claw_bind_host_opens_make_run_to_other_machines(name):
    # when
    with procfile_process(name, bind_host="0.0.0.0") as (_, addresses):  # noqa: S104 (what the test is about)
        # then
        assert addresses == {"0.0.0.0"}  # noqa: S104


def test_flowers_password_is_on_no_command_line():
    # when Flower is started by the Procfile's line
    with procfile_process("flower", bind_host=None) as (process, _):
        # then neither the shell nor Flower shows the password to `ps`
        members = [process, *process.children(recursive=True)]
        command_lines = [" ".join(member.cmdline()) for member in members]
        assert any("claw_ai.flower_server" in line for line in command_lines), command_lines
        assert not any(FLOWER_PASSWORD in line for line in command_lines), command_lines
