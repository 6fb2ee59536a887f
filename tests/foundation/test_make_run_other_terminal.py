"""While `make run` is up, manage.py and celery in another terminal of the checkout reach its servers.

`make run` here starts everything as a newcomer's does: private PostgreSQL and Redis (nothing named
in the environment), migrations, the admin account, the Procfile's processes. The "second terminal"
is a process with nothing exported either.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest

from claw_ai.settings import run_servers
from tests.support.processes import ROOT, TestProcess
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.worker]

# What the test process has, and neither terminal of a newcomer would.
NOT_EXPORTED = (
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "DJANGO_SETTINGS_MODULE",
    "DJANGO_SUPERUSER_USERNAME",
    "DJANGO_SUPERUSER_PASSWORD",
    "CLAW_BIND_HOST",
    "PYTEST_XDIST_WORKER",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def terminal_env(**extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in NOT_EXPORTED}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def second_terminal(*command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=ROOT, env=terminal_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


def get_json(url: str, token: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Token {token}", "Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


@pytest.fixture
def make_run():
    """`make run` (python -m devtools.run) on free ports, in its own session; stopped as Ctrl-C stops it."""
    if run_servers.read():
        pytest.skip(f"a make run of this checkout is running ({run_servers.SERVERS_FILE}): not starting another")
    web_port = free_port()
    env = terminal_env(
        WEB_PORT=str(web_port),
        FLOWER_PORT=str(free_port()),
        FLOWER_PASSWORD="other-terminal-flower",
        CELERY_WORKER_CONCURRENCY="2",
    )
    run = TestProcess([sys.executable, "-m", "devtools.run"], name="make-run-other-terminal", env=env)
    try:

        def web_answers():
            run.check_running()
            login_page = f"http://127.0.0.1:{web_port}/admin/login/"
            with contextlib.suppress(OSError), urllib.request.urlopen(login_page, timeout=2) as response:
                return response.status == 200
            return False

        wait_for(web_answers, timeout=180, interval=0.5, what="make run's web server")
        yield run.process, web_port, run.log_path
    finally:
        # Ctrl-C in a terminal: SIGINT to the whole foreground process group (the test may have sent it).
        run.stop(60, sig=signal.SIGINT)


def test_manage_py_and_celery_in_another_terminal_reach_make_runs_servers(make_run):
    process, web_port, log_path = make_run

    # when a second terminal, with nothing exported, makes a token for the admin make run created
    done = second_terminal(sys.executable, "manage.py", "drf_create_token", "admin")

    # then it reached make run's database: the token it made works against make run's web server
    assert done.returncode == 0, done.stderr
    token = done.stdout.split()[2]
    status, body = get_json(f"http://127.0.0.1:{web_port}/api/v1/tasks/list", token)
    assert status == 200
    assert "results" in body

    # and `celery -A claw_ai inspect ping` there reaches make run's workers through its Redis
    def both_workers_answer():
        ping = second_terminal(str(ROOT / ".venv" / "bin" / "celery"), "-A", "claw_ai", "inspect", "ping")
        return ping if "worker1@" in ping.stdout and "worker2@" in ping.stdout else None

    ping = wait_for(both_workers_answer, timeout=90, interval=1, what="make run's workers to answer a ping")
    assert ping.returncode == 0, ping.stderr

    # and `make admin-password` prints the password of that admin again (when make run generated it)
    shown = second_terminal(sys.executable, "-m", "devtools.run", "--admin-password")
    if shown.returncode == 0:
        password = shown.stdout.split()[3]
        check = "from django.contrib.auth import authenticate as a; print(a(username='admin', password=%r) is not None)"
        done = second_terminal(sys.executable, "manage.py", "shell", "-c", check % password)
        assert done.stdout.strip().endswith("True"), done.stdout + done.stderr
    else:  # an admin made by an earlier make run, before passwords were kept: the way to reset it is named
        assert "No generated admin password is kept" in shown.stderr
    assert "manage.py changepassword admin" in log_path.read_text()

    # when make run is stopped with Ctrl-C
    os.killpg(process.pid, signal.SIGINT)
    code = process.wait(60)

    # then it ends cleanly (make prints no "Error 130") and leaves no address behind
    assert code == 0, log_path.read_text()[-3000:]
    assert not run_servers.SERVERS_FILE.exists()
    output = log_path.read_text()
    assert "Traceback" not in output, output[-3000:]
