"""Workers for the benchmarks, run as subprocesses, and the memory they hold."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = ROOT / ".devdata" / "bench" / "logs"
SYSTEM_QUEUES = "ai_high_priority,knowledge_default,notification_default,default"


def system_env(**overrides: str) -> dict[str, str]:
    """The system as `make run` configures it, minus debug (which keeps every query in memory)."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "claw_ai.settings.development",
        "DJANGO_DEBUG": "false",
        "PYTHONUNBUFFERED": "1",
        **overrides,
    }


def bare_env(**overrides: str) -> dict[str, str]:
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.bare_settings", "PYTHONUNBUFFERED": "1", **overrides}


class Worker:
    """A `celery worker` subprocess of the system or of the baseline; stop() always ends it."""

    def __init__(
        self,
        kind: str,
        *,
        concurrency: int,
        pool: str = "prefork",
        extra_env: dict | None = None,
        queues: str = SYSTEM_QUEUES,
    ) -> None:
        assert kind in ("system", "bare")
        self.kind = kind
        self.name = f"bench-{kind}-{os.getpid()}-{time.monotonic_ns() % 10**6}@localhost"
        if kind == "system":
            app, include, env = "claw_ai", "bench.system_tasks", system_env(**(extra_env or {}))
        else:
            app, queues, include, env = "bench.bare_app", "bench_bare", "bench.bare_app", bare_env(**(extra_env or {}))
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app,
            "worker",
            "-n",
            self.name,
            "-Q",
            queues,
            "-c",
            str(concurrency),
            "-P",
            pool,
            "-I",
            include,
            "-l",
            "info",
            "--without-gossip",
            "--without-mingle",
        ]
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{self.name.split('@')[0]}.log"
        self._log = self.log_path.open("w")  # closed in stop
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 90) -> Worker:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} worker exited; log:\n{self.log_path.read_text()}")
            if " ready." in self.log_path.read_text(errors="replace"):
                return self
            time.sleep(0.2)
        raise TimeoutError(f"{self.kind} worker not ready after {timeout}s; log in {self.log_path}")

    def rss_bytes(self) -> int:
        """Resident memory of the worker and its pool processes."""
        return sum(rss_of(pid) for pid in [self.process.pid, *descendants(self.process.pid)])

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._log.close()

    def __enter__(self) -> Self:
        return self.wait_ready()

    def __exit__(self, *exc) -> None:
        self.stop()


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            # The command name (field 2) is in parentheses and may hold spaces: split after it.
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def rss_of(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by a process and its descendants still running."""
    total = 0
    for each in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def run_tasks(kind: str, tasks: int, **extra_env: str) -> dict:
    """Publish `tasks` trivial tasks and wait until every result is stored (bench.load, in its own process)."""
    env = system_env(**extra_env) if kind == "system" else bare_env(**extra_env)
    return run_json("bench.load", kind, str(tasks), env=env)


def run_json(module: str, *args: str, env: dict[str, str], timeout: float = 1800) -> dict:
    """Run `python -m module args...` and return the JSON on the last line of its output."""
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


class Gunicorn:
    """`gunicorn claw_ai.wsgi` with 4 workers × 2 threads (measurements 3 and 4), on a free port;
    asgi=True: as the Procfile starts it now, `claw_ai.asgi` under uvicorn's worker class (measurement 6)."""

    def __init__(self, env: dict[str, str], *, workers: int = 4, threads: int = 2, asgi: bool = False) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"gunicorn-{os.getpid()}.log"
        self._log = self.log_path.open("w")  # closed in stop
        command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers)]
        if asgi:
            command += ["claw_ai.asgi:application", "-k", "uvicorn_worker.UvicornWorker", "--graceful-timeout", "5"]
        else:
            command += ["claw_ai.wsgi:application", "--threads", str(threads), "--graceful-timeout", "5"]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def __enter__(self) -> Self:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited; log:\n{self.log_path.read_text()}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            time.sleep(0.2)
        raise TimeoutError(f"gunicorn not listening after 60 s; log in {self.log_path}")

    def __exit__(self, *exc) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._log.close()
