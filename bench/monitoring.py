"""Issue 17: what the metrics cost, and the monitoring pages on the million-record table.

    python -m bench --only monitoring [--quick]         # as part of `make bench`
    DATABASE_URL=<the big database> python -m bench.monitoring pages [runs]   # the pages alone

1. AI throughput and 2. the submit rate, each with the metrics on and off in the same run:
   "off" disables the monitoring triggers on the task records and messages (ALTER TABLE …
   DISABLE TRIGGER; monitoring migrations 0001, 0003 and 0005) and the worker's event counting
   (MONITORING_EVENTS=off), "on" is the system as it runs. The periodic fold (monitoring.fold,
   monitoring.counters.fold_increments) runs in neither: no beat runs here. The order alternates between
   repeats so drift in the machine's load favours neither; the cost is 1 - median(on / off).
   Target: at most 3% of each.
3. One scrape of GET /metrics and the admin dashboard (hour, day, week), timed in-process
   through Django's test client (no HTTP server: the server's own cost is the same for every
   page), warm, as the median and the worst of `runs` requests, on the bench's million-record
   table (bench.big_table). Targets: a scrape ≤ 100 ms, the dashboard ≤ 500 ms. The bench table
   has task records but no replies, so the token and cost charts read empty bins.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import time

import psycopg

# The tables whose monitoring triggers are switched off for the "off" runs.
COUNTED_TABLES = ("tasks_app_taskrecord", "conversations_message")


def _connect(database_url: str) -> psycopg.Connection:
    return psycopg.connect(database_url.replace("postgres://", "postgresql://", 1), autocommit=True)


def set_metric_triggers(database_url: str, *, enabled: bool) -> int:
    """Enable or disable every monitoring_* trigger on the counted tables; returns how many."""
    with _connect(database_url) as conn:
        triggers = conn.execute(
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE NOT t.tgisinternal AND t.tgname LIKE 'monitoring\\_%%' AND c.relname = ANY(%s)",
            [list(COUNTED_TABLES)],
        ).fetchall()
        for table, trigger in triggers:
            conn.execute(f'ALTER TABLE "{table}" {"ENABLE" if enabled else "DISABLE"} TRIGGER "{trigger}"')
    return len(triggers)


@contextlib.contextmanager
def metrics(database_url: str, *, on: bool):
    """The system with its metrics on or off; always on again afterwards."""
    count = set_metric_triggers(database_url, enabled=on)
    if not count:
        raise RuntimeError("no monitoring trigger found: is the database migrated?")
    try:
        yield {} if on else {"MONITORING_EVENTS": "off"}
    finally:
        set_metric_triggers(database_url, enabled=True)


def measure_ai_cost(*, tasks: int, repeats: int, concurrency: int, latency: float) -> dict:
    """AI generations drained by threads workers (one per core, as `make run`), metrics on vs off."""
    from bench.fake_llm_server import FakeLLMServer
    from bench.processes import ROOT, Worker, run_json, system_env

    database_url = os.environ["DATABASE_URL"]
    provider = FakeLLMServer(latency=latency).start_in_thread()
    llm = {"LLM_PROVIDER": "openai", "LLM_BASE_URL": provider.base_url, "LLM_API_KEY": "x", "AI_TASK_RATE_LIMIT": ""}
    cores = os.cpu_count() or 2
    ids = ROOT / ".devdata" / "bench" / "monitoring-ai-ids.json"
    ids.parent.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, float]] = []
    for repeat in range(repeats):
        rates = {}
        for on in (True, False) if repeat % 2 == 0 else (False, True):
            with metrics(database_url, on=on) as switch:
                run_json("bench.ai_load", "publish", str(tasks), str(ids), env=system_env(**switch))
                with contextlib.ExitStack() as stack:
                    for _ in range(cores):
                        stack.enter_context(
                            Worker(
                                "system",
                                queues="ai_high_priority",
                                concurrency=concurrency // cores,
                                pool="threads",
                                extra_env={**llm, **switch, "DJANGO_DB_POOL_MAX_SIZE": str(max(2, 20 // cores))},
                            )
                        )
                    outcome = run_json("bench.ai_load", "wait", str(ids), env=system_env(**switch))
            if outcome["states"] != {"SUCCESS": tasks}:
                raise RuntimeError(f"AI tasks did not all succeed: {outcome['states']}")
            rates["on" if on else "off"] = outcome["per_second"]
        runs.append(rates)
        print(f"monitoring ai {repeat + 1}/{repeats}: {rates}", file=sys.stderr, flush=True)
    return _cost(runs)


def measure_submit_cost(*, clients: int, seconds: float, repeats: int) -> dict:
    """POST /ai/generate from `clients` clients against gunicorn (no worker), metrics on vs off."""
    from bench.processes import Gunicorn, run_json, system_env

    database_url = os.environ["DATABASE_URL"]
    env = system_env(AI_GENERATE_THROTTLE_RATE="1000000/min", MAX_UNFINISHED_TASKS_PER_USER="100000000")
    token = run_json("bench.submit_load", "token", env=env)["token"]
    runs: list[dict[str, float]] = []
    with Gunicorn(env) as web:
        # Warm-up: every gunicorn process's connections and caches (the first seconds are slower).
        run_json("bench.submit_load", "http", web.url, token, str(clients), "2", env=env)
        run_json("bench.submit_load", "purge", env=env)
        for repeat in range(repeats):
            rates = {}
            for on in (True, False) if repeat % 2 == 0 else (False, True):
                with metrics(database_url, on=on):
                    outcome = run_json("bench.submit_load", "http", web.url, token, str(clients), str(seconds), env=env)
                run_json("bench.submit_load", "purge", env=env)
                if outcome["errors"]:
                    raise RuntimeError(f"submit errors: {outcome}")
                rates["on" if on else "off"] = outcome["per_second"]
            runs.append(rates)
            print(f"monitoring submit {repeat + 1}/{repeats}: {rates}", file=sys.stderr, flush=True)
    return _cost(runs)


def _cost(runs: list[dict[str, float]]) -> dict:
    ratio = statistics.median(run["on"] / run["off"] for run in runs)
    return {
        "on": statistics.median(run["on"] for run in runs),
        "off": statistics.median(run["off"] for run in runs),
        "cost": 1 - ratio,
        "runs": runs,
    }


def time_pages(runs: int, records: int) -> dict:
    """In this process (DATABASE_URL = the big database): one scrape and the dashboard's ranges."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "claw_ai.settings.development")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.test import Client
    from django.test.utils import override_settings

    from bench.big_table import load

    load(records)
    user, _ = get_user_model().objects.get_or_create(username="bench-monitoring", defaults={"is_staff": True})
    user.user_permissions.add(Permission.objects.get(codename="view_metrics", content_type__app_label="monitoring"))
    client = Client()
    client.force_login(user)
    token = settings.METRICS_TOKEN or "bench-metrics-token"
    pages = {"scrape /metrics": ("/metrics", {}, 100)}
    for key in ("hour", "day", "week"):
        pages[f"dashboard, {key}"] = ("/admin/monitoring/", {"range": key}, 500)
    figures = {}
    with override_settings(ALLOWED_HOSTS=["*"], METRICS_TOKEN=token):
        for label, (path, params, target) in pages.items():
            headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if path == "/metrics" else {}
            client.get(path, params, **headers)  # warm
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                response = client.get(path, params, **headers)
                times.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.status_code
            figures[label] = {
                "median_ms": round(statistics.median(times), 1),
                "max_ms": round(max(times), 1),
                "target_ms": target,
            }
            print(
                f"{label:<20} median {figures[label]['median_ms']:>7.1f} ms  worst {figures[label]['max_ms']:>7.1f} ms"
                f"  (target {target} ms)",
                file=sys.stderr,
            )
    return figures


def measure(*, quick: bool, repeats: int, big_database_url: str) -> list[dict]:
    """Every figure of issue 17, as rows for bench/__main__.py (dicts of Row's fields)."""
    from bench.processes import ROOT, run_json, system_env

    records = 100_000 if quick else 1_000_000
    ai = measure_ai_cost(tasks=200 if quick else 1000, repeats=repeats, concurrency=100, latency=1.0)
    submit = measure_submit_cost(clients=32, seconds=5 if quick else 20, repeats=repeats)
    env = system_env(DATABASE_URL=big_database_url)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    # Debug off, as in production: the admin's static files come from the manifest.
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    pages = run_json("bench.monitoring", "pages", str(10 if quick else 20), str(records), env=env, timeout=3600)

    def cost_row(name: str, unit: str, figures: dict) -> dict:
        return {
            "measurement": f"9. metrics cost: {name}, metrics on vs off in the same run",
            "system": f"on {figures['on']:.1f}{unit}, off {figures['off']:.1f}{unit}",
            "baseline": "off: monitoring triggers disabled, MONITORING_EVENTS=off",
            "ratio": f"cost {figures['cost']:.1%}",
            "target": "≤ 3%",
            "met": figures["cost"] <= 0.03,
        }

    rows = [
        cost_row("AI throughput (2 threads workers × 50, 1 s provider)", "/s", ai),
        cost_row("submit rate (POST /ai/generate, 32 clients)", "/s", submit),
    ]
    for label, figure in pages.items():
        rows.append(
            {
                "measurement": f"9. {label}, {records:,} records (in-process, warm)",
                "system": f"median {figure['median_ms']} ms, worst {figure['max_ms']} ms",
                "baseline": "—",
                "ratio": "—",
                "target": f"≤ {figure['target_ms']} ms",
                "met": figure["median_ms"] <= figure["target_ms"],
            }
        )
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["pages"]:
        print(json.dumps(time_pages(int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 1_000_000)))
    else:
        sys.exit(__doc__)
