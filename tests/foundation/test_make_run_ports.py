"""`make run` checks its two ports before it starts anything, and says in one line what to do."""

import socket
import subprocess
import sys

import pytest

from tests.support.processes import ROOT, process_env


def listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("taken", ["WEB_PORT", "FLOWER_PORT"])
def test_a_busy_port_ends_make_run_in_one_line_naming_it(taken, tmp_path):
    # given something already listening on the port make run is to use
    with listening_socket() as busy:
        port = busy.getsockname()[1]
        ports = {"WEB_PORT": str(free_port()), "FLOWER_PORT": str(free_port()), taken: str(port)}
        env = process_env(**ports)
        # no servers named: had make run started anything, it would have been private servers
        for name in ("DATABASE_URL", "REDIS_URL", "CLAW_BIND_HOST", "DJANGO_SETTINGS_MODULE"):
            env.pop(name, None)

        # when make run starts (what `make run` runs)
        done = subprocess.run(
            [sys.executable, "-m", "devtools.run"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    # then it stops at once with a non-zero code and one line: which port, and how to choose another
    output = (done.stdout + done.stderr).strip()
    assert done.returncode != 0
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1, output
    assert str(port) in output
    assert taken in output
    assert f"make run {taken}=" in output
    # and it started nothing: no private servers were announced
    assert "private servers" not in output
