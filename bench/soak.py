"""The soak: mixed load for a long time while worker nodes die and Redis restarts (`make bench`, never `make test`).

    python -m bench.soak --minutes 30            # the issue's soak: a node killed every 5 minutes
    python -m bench.soak --minutes 3 --kill-every 60   # a short one, to check the harness
    python -m bench --soak 30                    # the same, from the benchmark entry point

Runs the topology of `make run` against its own persistent Redis (restarted once, halfway, with
its data) and DATABASE_URL: gunicorn, two AI workers on threads, the prefork background worker,
and a loopback LLM answering in 0.5 s. Clients submit AI replies through the API, upload knowledge
documents, cancel some replies and retry some cancelled ones. Every `--kill-every` seconds one AI
worker node is SIGKILLed and a new one started (with another name, as a new container would be).

At the end, after the load stops and the queues drain, it reports: tasks accepted (202) and
finished (SUCCESS, FAILURE or REVOKED), lost (accepted, not finished), AI tasks with more than one
saved reply, the background worker's RSS at the start and the end, and the submit latency (p50,
p99). Writes bench/SOAK.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import requests

from bench.fake_llm_server import FakeLLMServer
from bench.processes import ROOT, Gunicorn, Worker, system_env
from devtools.private_servers import PrivateRedis

RESULTS = Path(__file__).resolve().parent / "SOAK.json"
AI_QUEUE = "ai_high_priority"
BACKGROUND_QUEUES = "knowledge_default,notification_default,default"


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Load:
    """Client threads: AI replies, knowledge uploads, cancels, retries; every answer noted."""

    def __init__(self, api: str, token: str, clients: int) -> None:
        self.api, self.clients = api, clients
        self.headers = {"Authorization": f"Token {token}"}
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.accepted: set[str] = set()
        self.ai_ids: list[str] = []
        self.cancelled: list[str] = []
        self.latencies: list[float] = []
        self.refused = Counter()

    def post(self, session, path: str, body: dict | None = None):
        started = time.perf_counter()
        response = session.post(f"{self.api}{path}", json=body, headers=self.headers, timeout=30)
        return response, time.perf_counter() - started

    def client(self, number: int) -> None:  # noqa: C901, PLR0912 (one branch per action of the weighted mix)
        session = requests.Session()
        rng = random.Random(number)  # noqa: S311 (a reproducible load mix, not a secret)
        while not self.stop.is_set():
            roll, response = rng.random(), None
            try:
                if roll < 0.85:
                    # Twenty conversations of five chat users per client: each chat user may have
                    # AI_MAX_CONCURRENT_PER_USER replies in hand, the rest wait their turn.
                    conversation = rng.randrange(20)
                    body = {
                        "conversation_id": f"soak_{number}_{conversation}",
                        "user_message": f"question {uuid.uuid4().hex[:8]}",
                        "user_id": f"soak_user_{number}_{conversation % 5}",
                    }
                    response, took = self.post(session, "/api/v1/tasks/ai/generate", body)
                    if response.status_code == 202:
                        task_id = response.json()["task_id"]
                        with self.lock:
                            self.accepted.add(task_id)
                            self.ai_ids.append(task_id)
                            self.latencies.append(took)
                elif roll < 0.90:
                    body = {"user_id": f"soak_user_{number}", "title": "doc", "content": "退款政策 refunds " * 50}
                    response, _ = self.post(session, "/api/v1/knowledge/documents/", body)
                    if response.status_code in (201, 202):
                        task_id = response.json().get("index_task_id")
                        if task_id:
                            with self.lock:
                                self.accepted.add(task_id)
                elif roll < 0.97:
                    with self.lock:
                        target = rng.choice(self.ai_ids[-50:]) if self.ai_ids else None
                    if target:
                        response, _ = self.post(session, f"/api/v1/tasks/cancel/{target}")
                        if response.status_code == 200:
                            with self.lock:
                                self.cancelled.append(target)
                else:
                    with self.lock:
                        target = rng.choice(self.cancelled) if self.cancelled else None
                    if target:
                        response, _ = self.post(session, f"/api/v1/tasks/retry/{target}")
                        if response.status_code in (200, 202):
                            with self.lock:
                                self.accepted.add(response.json()["task_id"])
                if response is not None and response.status_code >= 500:
                    self.refused[response.status_code] += 1
            except requests.RequestException as error:
                self.refused[type(error).__name__] += 1
            time.sleep(rng.uniform(0.05, 0.3))

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.client, args=(n,), daemon=True) for n in range(self.clients)]
        for thread in threads:
            thread.start()
        return threads


def api_token(env: dict[str, str]) -> str:
    import subprocess

    code = (
        "import django; django.setup();"
        "from django.contrib.auth import get_user_model;"
        "from rest_framework.authtoken.models import Token;"
        "from django.contrib.auth.models import Permission;"
        "u, _ = get_user_model().objects.get_or_create(username='soak');"
        "u.user_permissions.add(Permission.objects.get(codename='manage_all_tasks'));"
        "print(Token.objects.get_or_create(user=u)[0].key)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1]


def count_outcomes(env: dict[str, str], accepted: set[str], ai_ids: list[str]) -> dict:
    os.environ.update({key: env[key] for key in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL")})
    import django

    django.setup()
    from conversations.models import Message, MessageRole
    from tasks_app.models import TaskRecord, TaskState

    finished_states = [TaskState.SUCCESS, TaskState.FAILURE, TaskState.REVOKED]
    ids = list(accepted)
    finished = 0
    for start in range(0, len(ids), 5000):
        finished += TaskRecord.objects.filter(task_id__in=ids[start : start + 5000], state__in=finished_states).count()
    replies = Counter()
    for start in range(0, len(ai_ids), 5000):
        replies.update(
            Message.objects.filter(task_id__in=ai_ids[start : start + 5000], role=MessageRole.ASSISTANT).values_list(
                "task_id", flat=True
            )
        )
    # What the unfinished ones are doing: their state and note ("waiting: user_concurrency", ...).
    unfinished: Counter = Counter()
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        unfinished["no record"] += len(chunk) - TaskRecord.objects.filter(task_id__in=chunk).count()
        rows = TaskRecord.objects.filter(task_id__in=chunk).exclude(state__in=finished_states)
        unfinished.update(f"{state} {error[:40]}".strip() for state, error in rows.values_list("state", "error"))
    return {
        "finished": finished,
        "duplicate_replies": sum(1 for count in replies.values() if count > 1),
        "unfinished": {key: count for key, count in unfinished.most_common(10) if count},
    }


def soak(minutes: float, kill_every: float, clients: int) -> dict:  # noqa: PLR0915 (the run, top to bottom)
    if not os.environ.get("DATABASE_URL"):
        sys.exit("DATABASE_URL must be set (`make bench` starts a private PostgreSQL and sets it)")
    redis_server = PrivateRedis(Path(tempfile.mkdtemp(prefix="claw-soak-")), persistent=True)
    redis_url = redis_server.start()
    llm = FakeLLMServer(latency=0.5)
    llm.handle_error = lambda *_: None  # a killed worker's cut connections are the point, not news
    llm.start_in_thread()
    overrides = {
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "LLM_PROVIDER": "openai",
        "LLM_BASE_URL": llm.base_url,
        "LLM_API_KEY": "sk-soak",
        "AI_TASK_RATE_LIMIT": "",
        "MAX_UNFINISHED_TASKS_PER_USER": "0",
        "AI_GENERATE_THROTTLE_RATE": "",
        "TASK_CANCEL_THROTTLE_RATE": "",
        "TASK_RETRY_THROTTLE_RATE": "",
        "KNOWLEDGE_WRITE_THROTTLE_RATE": "",
        "DJANGO_DB_POOL_MAX_SIZE": "10",
    }
    env = system_env(**overrides)
    os.environ.update(overrides)  # the workers' environment (bench.processes.system_env reads it)
    import subprocess

    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    token = api_token(env)
    ai_workers = [Worker("system", concurrency=20, pool="threads", queues=AI_QUEUE).wait_ready() for _ in range(2)]
    background = Worker("system", concurrency=2, pool="prefork", queues=BACKGROUND_QUEUES).wait_ready()
    rss_start = background.rss_bytes()
    report: dict = {"minutes": minutes, "kill_every_seconds": kill_every, "clients": clients, "kills": 0}
    try:
        with Gunicorn(env) as web:
            load = Load(web.url, token, clients)
            threads = load.start()
            started = time.monotonic()
            next_kill, restarted = started + kill_every, False
            while time.monotonic() - started < minutes * 60:
                time.sleep(1)
                if time.monotonic() >= next_kill:
                    doomed = ai_workers.pop(0)
                    log(f"SIGKILL worker node {doomed.name} ({len(load.accepted)} tasks accepted so far)")
                    os.killpg(doomed.process.pid, signal.SIGKILL)
                    doomed.stop()
                    ai_workers.append(Worker("system", concurrency=20, pool="threads", queues=AI_QUEUE).wait_ready())
                    report["kills"] += 1
                    next_kill += kill_every
                if not restarted and time.monotonic() - started >= minutes * 30:
                    log("restarting Redis with its data")
                    redis_server.stop()
                    redis_server.start()
                    restarted = True
            load.stop.set()
            for thread in threads:
                thread.join(35)
            log(f"load stopped: {len(load.accepted)} accepted; waiting for the queues to drain")
            deadline = time.monotonic() + 300
            outcome = count_outcomes(env, load.accepted, load.ai_ids)
            while outcome["finished"] < len(load.accepted) and time.monotonic() < deadline:
                time.sleep(5)
                outcome = count_outcomes(env, load.accepted, load.ai_ids)
        latencies = sorted(load.latencies)
        report.update(
            accepted=len(load.accepted),
            finished=outcome["finished"],
            lost=len(load.accepted) - outcome["finished"],
            unfinished_by_state=outcome["unfinished"],
            duplicate_replies=outcome["duplicate_replies"],
            server_errors=dict(load.refused),
            background_worker_rss_mib={
                "start": round(rss_start / 2**20, 1),
                "end": round(background.rss_bytes() / 2**20, 1),
            },
            submit_latency_ms={
                "p50": round(statistics.median(latencies) * 1000, 1) if latencies else None,
                "p99": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1) if latencies else None,
            },
        )
    finally:
        for worker in [*ai_workers, background]:
            worker.stop()
        redis_server.stop()
        llm.shutdown()
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    log(json.dumps(report))
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--kill-every", type=float, default=300, help="seconds between worker node kills")
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    report = soak(args.minutes, args.kill_every, args.clients)
    return 0 if report["lost"] == 0 and report["duplicate_replies"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
