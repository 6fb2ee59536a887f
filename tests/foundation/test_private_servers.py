"""`make run` / `make test` start private PostgreSQL and Redis only when none is named, and stop them."""

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from django.conf import settings

from tests.support import processes

# Starts private PostgreSQL and Redis servers: left out of make test-fast.
pytestmark = pytest.mark.worker

ROOT = Path(__file__).resolve().parents[2]

# Run by the wrapped command: prove both servers answer, then print the URLs it was given.
PROBE = """
import os, psycopg, redis
with psycopg.connect(os.environ["DATABASE_URL"]) as db:
    assert db.execute("SELECT 1").fetchone() == (1,)
assert redis.Redis.from_url(os.environ["REDIS_URL"]).ping()
print(os.environ["DATABASE_URL"], os.environ["REDIS_URL"])
"""


def run_wrapped(data: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "devtools.private_servers", "--data", str(data), "--", sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def processes_using(path: Path) -> list[psutil.Process]:
    return [
        process
        for process in psutil.process_iter(["cmdline"])
        if any(str(path) in part for part in process.info["cmdline"] or ())
    ]


def test_with_no_servers_named_private_ones_start_answer_and_stop(tmp_path):
    # given an environment naming no servers (and no .env file in play: the probe names its own)
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    data = tmp_path / "servers"

    # when a command runs under the wrapper
    done = run_wrapped(data, env)

    # then it reached a private PostgreSQL and Redis on loopback, whose data lives under the folder
    assert done.returncode == 0, done.stderr
    database_url, redis_url = done.stdout.split()
    assert database_url.startswith("postgres://postgres@127.0.0.1:")
    assert redis_url.startswith("redis://127.0.0.1:")
    assert (data / "postgres" / "PG_VERSION").exists()
    # and nothing of them is left running once the command ended
    assert processes_using(data) == []


def test_with_servers_named_none_is_started(tmp_path, db):
    # given the servers the test run itself uses
    env = {**os.environ, "DATABASE_URL": processes.test_database_url(), "REDIS_URL": settings.REDIS_URL}
    data = tmp_path / "servers"

    # when a command runs under the wrapper
    done = run_wrapped(data, env)

    # then it got exactly those, and no private server was set up
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [env["DATABASE_URL"], env["REDIS_URL"]]
    assert not data.exists()
