"""Measurement 3 over HTTP: the API and the admin on the big table, served exactly as the Procfile serves them.

    python -m bench.big_table_http [repeats] [requests]    # DATABASE_URL = the big database (bench.big_table)

The server is the Procfile's `web:` command itself (gunicorn, uvicorn's worker class, 4 processes,
the access log written), read from the Procfile with its defaults, on a free port. Each repeat
starts it afresh and measures:
- cold: the first request of each kind on the fresh server (every process still has its imports,
  templates, URL patterns and database pool to make) — for the admin, a deep page never read before
  (its cursor at a random point of the table's 30 days), the Last page and an old `?p=10000` link too;
- warm: the median of `requests` sequential requests of each kind on one keep-alive connection, from a
  client in this process (http.client: little CPU of its own on the shared machine).
The figures are medians over the repeats; the CPU the server spent per warm request (its processes'
user + system time) is printed beside them.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Self

import django

ROOT = Path(__file__).resolve().parent.parent
LOG = ROOT / ".devdata" / "bench" / "logs" / "big-table-web.log"
ADMIN = "/admin/tasks_app/taskrecord/"
RESULTS = "/admin/django_celery_results/taskresult/"


def procfile_web_command(port: int) -> list[str]:
    """The Procfile's web command with its ${VAR:-default}s filled in, bound to 127.0.0.1:`port`."""
    line = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))
    command = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: os.environ.get(m[1], m[2]), line.removeprefix("web:"))
    args = shlex.split(command)
    args[args.index("--bind") + 1] = f"127.0.0.1:{port}"
    assert args[0] == "gunicorn", args
    return [sys.executable, "-m", "gunicorn", *args[1:]]


class Web:
    def __init__(self, env: dict[str, str]) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        LOG.parent.mkdir(parents=True, exist_ok=True)
        self._log = LOG.open("a")  # closed in __exit__
        self._log_start = LOG.stat().st_size
        command = procfile_web_command(self.port)
        self.workers = int(command[command.index("--workers") + 1])
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def __enter__(self) -> Self:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the web server exited; log in {LOG}")
            # Every process has loaded the application (cold is the first request, not the start-up).
            with LOG.open("rb") as log:
                log.seek(self._log_start)
                if log.read().count(b"Application startup complete") >= self.workers:
                    return self
            time.sleep(0.2)
        raise TimeoutError(f"the web server's processes are not all up after 60 s; log in {LOG}")

    def __exit__(self, *exc) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self._log.close()

    def cpu_ms(self) -> float:
        """User + system CPU of the server's processes so far (the workers are the master's children)."""
        pids = [self.process.pid]
        with contextlib.suppress(OSError):
            pids += [
                int(p) for p in Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
            ]
        ticks = 0
        for pid in pids:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])
        return ticks * 1000 / os.sysconf("SC_CLK_TCK")


def get(conn: http.client.HTTPConnection, path: str, headers: dict) -> float:
    started = time.perf_counter()
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status != 200:
        raise RuntimeError(f"GET {path}: {response.status} {body[:300]!r}")
    return elapsed


def deep_admin_page(oldest: datetime, newest: datetime) -> str:
    """A page at a random point of the table: the cursor of its Next link, as the admin makes it."""
    from tasks_app.paginators import AFTER, CURSOR_VAR, encode_cursor

    at = oldest + (newest - oldest) * random.random()  # noqa: S311 (sampling, not a secret)
    return f"{ADMIN}?{CURSOR_VAR}={encode_cursor(AFTER, [str(at), 2**62])}"


def one_repeat(env: dict[str, str], access: dict, requests: int) -> dict[str, float]:
    api = {"Authorization": f"Token {access['token']}"}
    admin = {"Cookie": "; ".join(f"{k}={v}" for k, v in access["session_cookie"].items())}
    ids = access["task_ids"]
    oldest, newest = (datetime.fromisoformat(access[key]) for key in ("oldest", "newest"))
    kinds = {
        "status": (api, lambda i: f"/api/v1/tasks/status/{ids[i % len(ids)]}", requests),
        "list": (api, lambda i: "/api/v1/tasks/list?status=SUCCESS&limit=50", requests),
        "stats": (api, lambda i: "/api/v1/tasks/stats", requests),
        "admin": (admin, lambda i: ADMIN, max(10, requests // 5)),
        "admin_deep": (admin, lambda i: deep_admin_page(oldest, newest), max(10, requests // 5)),
        "results_admin": (admin, lambda i: RESULTS, max(10, requests // 5)),
    }
    figures: dict[str, float] = {}
    with Web(env) as web:
        conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=120)
        for kind, (headers, path, _) in kinds.items():
            figures[f"{kind}_cold"] = get(conn, path(0), headers)
        figures["admin_last_cold"] = get(conn, f"{ADMIN}?cursor=WyJwIiwgbnVsbF0", admin)  # ["p", null]: Last
        figures["admin_p10000_cold"] = get(conn, f"{ADMIN}?p=10000", admin)
        figures["results_p10000_cold"] = get(conn, f"{RESULTS}?p=10000", admin)
        for kind, (headers, path, count) in kinds.items():
            for i in range(10):  # every process has served one of each
                get(conn, path(i), headers)
            cpu = web.cpu_ms()
            figures[kind] = statistics.median(get(conn, path(i), headers) for i in range(count))
            figures[f"{kind}_cpu"] = (web.cpu_ms() - cpu) / count
    return figures


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    requests = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "claw_ai.settings.development")
    django.setup()  # the admin's cursors are made by its own code (tasks_app.paginators)
    env = {**os.environ, "DJANGO_DEBUG": "false", "PYTHONUNBUFFERED": "1"}
    access = json.loads(
        subprocess.run(
            [sys.executable, "-m", "bench.big_table", "credentials"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    runs = []
    for repeat in range(repeats):
        runs.append(one_repeat(env, access, requests))
        print(f"repeat {repeat + 1}/{repeats}, load {os.getloadavg()[0]:.1f}: {json.dumps(runs[-1])}", file=sys.stderr)
    medians = {key: round(statistics.median(run[key] for run in runs), 2) for key in runs[0]}
    print(json.dumps({"repeats": repeats, "requests": requests, "load": os.getloadavg()[0], **medians}))


if __name__ == "__main__":
    main()
