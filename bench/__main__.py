"""`make bench`: each measurement beside its baseline, medians of repeated runs, ratios pair by pair.

    python -m bench                      # everything, full size (needs DATABASE_URL, REDIS_URL)
    python -m bench --quick              # small sizes, to check the harness works
    python -m bench --only overhead      # one part: overhead, profile (database work per task), memory
    python -m bench --only monitoring    # issue 17: metrics cost, /metrics and the dashboard on 1M records
    python -m bench --only streaming --stream-replies 50 --idle-streams 200   # live replies, smaller
    python -m bench --only fairness      # issue 15: a chat user's burst and the next user's reply
    python -m bench --soak 30            # only the soak: 30 minutes of mixed load, nodes killed, Redis restarted

Prints a table and writes it to bench/RESULTS.md with the machine's core count.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import celery
import django
import psycopg

from bench import db_profile, fairness, streaming
from bench import monitoring as bench_monitoring
from bench.fake_llm_server import FakeLLMServer
from bench.processes import ROOT, Gunicorn, Worker, bare_env, cpu_seconds, run_json, run_tasks, system_env

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
# Every row of the latest full-size run of each measurement: a run of some (--only) keeps the others.
RESULTS_JSON = Path(__file__).resolve().parent / "results.json"
PARTS = ["overhead", "profile", "ai", "publish", "api", "submit", "memory", "monitoring", "streaming", "fairness"]


@dataclass
class Row:
    measurement: str
    system: str
    baseline: str
    ratio: str
    target: str
    met: bool | None
    run: str = ""  # when, under what load, how many repeats (filled in by main)

    def cells(self) -> list[str]:
        met = "—" if self.met is None else ("yes" if self.met else "**no**")
        return [self.measurement, self.system, self.baseline, self.ratio, self.target, met, self.run]

    @property
    def number(self) -> str:
        return self.measurement.split(" ", 1)[0]


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def measure_overhead(*, tasks: int, repeats: int, concurrency: int) -> Row:
    """1. Trivial tasks end to end (publish → worker → result stored): system vs bare Celery."""
    pairs = []
    with Worker("system", concurrency=concurrency), Worker("bare", concurrency=concurrency):
        log("overhead: warm-up")
        run_tasks("system", min(tasks, 200))
        run_tasks("bare", min(tasks, 200))
        for repeat in range(repeats):
            # Alternate which goes first, so drift in the machine's load does not favour one side.
            order = ("system", "bare") if repeat % 2 == 0 else ("bare", "system")
            rates = {kind: run_tasks(kind, tasks)["per_second"] for kind in order}
            pairs.append((rates["system"], rates["bare"]))
            log(f"overhead {repeat + 1}/{repeats}: system {rates['system']:.0f}/s, bare {rates['bare']:.0f}/s")
    ratio = statistics.median(s / b for s, b in pairs)
    return Row(
        f"1. overhead: {tasks:,} trivial tasks end to end, tasks/s (c={concurrency}, prefork)",
        f"{statistics.median(s for s, _ in pairs):.0f}",
        f"{statistics.median(b for _, b in pairs):.0f}",
        f"{ratio:.2f}",
        "ratio ≥ 0.80",
        ratio >= 0.8,
    )


def measure_ai(  # noqa: C901, PLR0915 (one measurement's setups, runs and rows, read top to bottom)
    *,
    tasks: int,
    baseline_tasks: int,
    repeats: int,
    concurrency: int,
    pool_size: int,
    latency: float,
    baselines: bool = True,
) -> list[Row]:
    """2. AI generations against a provider answering in `latency` s.

    CLAW.AI as make run starts it (one threads worker per core, pooled connections) beside plain
    Celery + django-celery-results shaped the same (threads, same workers and concurrency, the same
    provider call, connections kept), each measured twice with the same workers: draining a queue
    filled before they started, then end to end (publish included, workers running). With
    `baselines`, also Celery's default (prefork, one process per core) and CLAW.AI as one process.
    """
    provider = FakeLLMServer(latency=latency).start_in_thread()
    llm = {
        "LLM_PROVIDER": "openai",
        "LLM_BASE_URL": provider.base_url,
        "LLM_API_KEY": "x",
        # The per-worker rate limit (10/m by default) would be all this measures.
        "AI_TASK_RATE_LIMIT": "",
    }
    cores = os.cpu_count() or 2
    # Each setup: the workers it starts. A threads worker is one Python process (one core at most, the
    # GIL): make run and compose split the concurrency over one threads process per core; the single
    # process with all of it is measured beside them.
    per_core = {"concurrency": concurrency // cores, "pool": "threads"}
    setups: dict[str, list[dict]] = {
        "threads_per_core": [{**per_core, "extra_env": {**llm, "DJANGO_DB_POOL_MAX_SIZE": str(pool_size // cores)}}]
        * cores,
        "peer": [{**per_core, "kind": "bare"}] * cores,
    }
    if baselines:
        setups["threads"] = [
            {
                "concurrency": concurrency,
                "pool": "threads",
                "extra_env": {**llm, "DJANGO_DB_POOL_MAX_SIZE": str(pool_size)},
            }
        ]
        setups["prefork"] = [{"concurrency": cores, "pool": "prefork", "extra_env": llm}]
    sizes = {setup: baseline_tasks if setup == "prefork" else tasks for setup in setups}
    end_to_end = {"threads_per_core", "peer"}  # also measured end to end, with the drain's workers
    ids = ROOT / ".devdata" / "bench" / "ai-task-ids.json"
    # Chat users: at most AI_MAX_CONCURRENT_PER_USER (2) replies of each in the workers' hands, so c ÷ 2
    # of them can fill the threads (50 at c = 100, as in the earlier rounds).
    users = str(max(1, concurrency // 2))
    runs: list[dict[str, float]] = []
    usage: list[dict[str, float]] = []

    def checked(outcome: dict, expected: int) -> dict:
        if outcome["states"] != {"SUCCESS": expected}:
            raise RuntimeError(f"AI tasks did not all succeed: {outcome['states']}")
        return outcome

    for repeat in range(repeats):
        # Alternate the order, so drift in the machine's load does not favour one setup.
        order = list(setups) if repeat % 2 == 0 else list(reversed(setups))
        rates: dict[str, float] = {}
        used: dict[str, float] = {}
        for setup in order:
            bare = setup == "peer"
            env = bare_env() if bare else system_env()
            if bare:
                run_json("bench.ai_load", "bare-publish", str(sizes[setup]), provider.base_url, str(ids), env=env)
            else:
                run_json("bench.ai_load", "publish", str(sizes[setup]), str(ids), users, env=env)
            with contextlib.ExitStack() as stack:
                workers = [
                    Worker(spec.get("kind", "system"), queues="ai_high_priority", **_worker_options(spec))
                    for spec in setups[setup]
                ]
                for worker in workers:
                    stack.enter_context(worker)
                outcome = run_json("bench.ai_load", "bare-wait" if bare else "wait", str(ids), env=env)
                rates[setup] = checked(outcome, sizes[setup])["per_second"]
                if setup in end_to_end:
                    cpu = sum(cpu_seconds(worker.process.pid) for worker in workers)
                    command = ["bare-e2e", str(tasks), provider.base_url, str(ids)]
                    if not bare:
                        command = ["e2e", str(tasks), str(ids), users]
                    outcome = checked(run_json("bench.ai_load", *command, env=env), tasks)
                    rates[f"{setup}_e2e"] = outcome["e2e_per_second"]
                    rates[f"{setup}_publish"] = tasks / outcome["publish_seconds"]
                    used[f"{setup}_cpu_ms"] = (sum(cpu_seconds(w.process.pid) for w in workers) - cpu) / tasks * 1000
                    used[f"{setup}_rss_mib"] = sum(worker.rss_bytes() for worker in workers) / 2**20
        runs.append(rates)
        usage.append(used)
        log(f"ai c={concurrency} {repeat + 1}/{repeats}: " + ", ".join(f"{k} {v:.2f}/s" for k, v in rates.items()))
        log(f"ai c={concurrency} {repeat + 1}/{repeats}: " + ", ".join(f"{k} {v:.1f}" for k, v in used.items()))
    ceiling = concurrency / latency

    def med(setup: str) -> float:
        return statistics.median(r[setup] for r in runs)

    def ratio(setup: str, baseline: str) -> float:
        return statistics.median(r[setup] / r[baseline] for r in runs)

    def used_by(setup: str) -> str:
        cpu = statistics.median(u[f"{setup}_cpu_ms"] for u in usage)
        rss = statistics.median(u[f"{setup}_rss_mib"] for u in usage)
        return f"CPU {cpu:.1f} ms/task, RSS {rss:.0f} MiB"

    shape = f"{cores} workers -P threads -c {concurrency // cores}"
    e2e_target = 90 if concurrency <= 100 else 0.75 * ceiling
    e2e, peer_e2e = med("threads_per_core_e2e"), med("peer_e2e")
    e2e_ratio = ratio("threads_per_core_e2e", "peer_e2e")
    rows = [
        Row(
            f"2c. AI replies end to end, {tasks:,} replies, provider latency {latency:g} s, {shape} (c = "
            f"{concurrency}), tasks/s from the first apply_async to the last stored result, workers running "
            f"(baseline: plain Celery + django-celery-results shaped the same, connections kept)",
            f"{e2e:.1f} (publish {med('threads_per_core_publish'):.0f}/s; {used_by('threads_per_core')})",
            f"{peer_e2e:.1f} (publish {med('peer_publish'):.0f}/s; {used_by('peer')})",
            f"{e2e_ratio:.2f}",
            f"≥ 1.15× and ≥ {e2e_target:.0f}/s",
            e2e_ratio >= 1.15 and e2e >= e2e_target,
        ),
        Row(
            f"2d. the same drain only (queue filled before the workers start; first start to last end), c = "
            f"{concurrency}",
            f"{med('threads_per_core'):.1f} ({med('threads_per_core') / ceiling:.0%} of {ceiling:.0f})",
            f"{med('peer'):.1f}",
            f"{ratio('threads_per_core', 'peer'):.2f}",
            "—",
            None,
        ),
    ]
    if not baselines:
        return rows
    one, split = med("threads"), med("threads_per_core")
    return [
        Row(
            f"2. AI throughput: {tasks:,} generations, provider latency {latency:g} s, tasks/s (CLAW.AI as make run "
            f"and compose start it: {cores} workers, one per core, -P threads -c {concurrency // cores}, pool "
            f"{pool_size // cores} connections each; baseline: Celery's default, prefork -c {cores}, "
            f"{baseline_tasks} generations)",
            f"{split:.1f} ({split / ceiling:.0%} of {ceiling:.0f})",
            f"{med('prefork'):.2f}",
            f"{ratio('threads_per_core', 'prefork'):.0f}×",
            f"≥ {0.8 * ceiling:.0f}/s (80% of c ÷ latency)",
            split >= 0.8 * ceiling,
        ),
        Row(
            f"2b. the same, CLAW.AI as one worker -P threads -c {concurrency}, pool {pool_size} connections",
            f"{one:.1f} ({one / ceiling:.0%} of {ceiling:.0f})",
            f"{med('prefork'):.2f}",
            f"{ratio('threads', 'prefork'):.0f}×",
            f"≥ {0.8 * ceiling:.0f}/s (80% of c ÷ latency)",
            one >= 0.8 * ceiling,
        ),
        *rows,
    ]


def _worker_options(spec: dict) -> dict:
    return {key: value for key, value in spec.items() if key != "kind"}


def measure_publish(*, tasks: int, repeats: int) -> list[Row]:
    """8. Publish from one process, no worker: apply_async one at a time, and as one group, vs plain Celery."""
    runs: list[dict[str, float]] = []
    for repeat in range(repeats):
        rates: dict[str, float] = {}
        order = ("system", "bare") if repeat % 2 == 0 else ("bare", "system")
        for how in ("single", "group"):
            for kind in order:
                env = system_env() if kind == "system" else bare_env()
                outcome = run_json("bench.load", "publish", kind, str(tasks), how, env=env)
                if kind == "system" and outcome["recorded"] != tasks:
                    raise RuntimeError(f"{outcome['recorded']} of {tasks} records written")
                rates[f"{kind}_{how}"] = outcome["per_second"]
        runs.append(rates)
        log(f"publish {repeat + 1}/{repeats}: " + ", ".join(f"{k} {v:.0f}/s" for k, v in rates.items()))

    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    def ratio(how: str) -> float:
        return statistics.median(r[f"system_{how}"] / r[f"bare_{how}"] for r in runs)

    rows = []
    for how, label in (("single", "apply_async one at a time"), ("group", "as one group")):
        rows.append(
            Row(
                f"8{'' if how == 'single' else 'b'}. publish from one process, {tasks:,} trivial tasks, {label}, "
                "no worker, tasks/s (CLAW.AI: every record written)",
                f"{med(f'system_{how}'):.0f}",
                f"{med(f'bare_{how}'):.0f}",
                f"{ratio(how):.2f}",
                "≥ 600/s and ≥ 0.5×",
                med(f"system_{how}") >= 600 and ratio(how) >= 0.5,
            )
        )
    return rows


def big_database_url() -> str:
    """DATABASE_URL with `_big` after the database name, created if missing: measurement 3's
    million rows stay out of the other measurements' way (and are kept for the next run)."""
    url = os.environ["DATABASE_URL"].replace("postgres://", "postgresql://", 1)
    base, _, name = url.rpartition("/")
    name, query = [*name.split("?", 1), ""][:2]
    with psycopg.connect(url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [f"{name}_big"]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}_big"')
    return f"{base}/{name}_big" + (f"?{query}" if query else "")


def measure_api(*, records: int, repeats: int, requests_per_run: int) -> list[Row]:
    """3. The API and the admin over HTTP on `records` task records, served as the Procfile serves them
    (bench.big_table_http: the Procfile's web command, access log on; cold and warm; medians of the repeats)."""
    env = system_env(DATABASE_URL=big_database_url())
    log(f"api: migrating and loading {records:,} records (once; kept for later runs)")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    # Debug off, as in production: the admin's static files come from the manifest, as in the image.
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    log(f"api: {run_json('bench.big_table', 'load', str(records), env=env, timeout=3600)}")
    access = run_json("bench.big_table", "credentials", env=env)
    ids_path = ROOT / ".devdata" / "bench" / "big-task-ids.json"
    ids_path.write_text(json.dumps(access["task_ids"]))
    http = run_json("bench.big_table_http", str(repeats), str(requests_per_run), env=env, timeout=3600)
    log(f"api over HTTP: {http}")
    plain = [
        run_json("bench.big_table", "baseline", str(ids_path), env=bare_env(DATABASE_URL=env["DATABASE_URL"]))
        for _ in range(repeats)
    ]

    def figure(key: str) -> str:
        return f"{http[key]:.1f} ms warm, {http[key + '_cold']:.0f} ms cold (CPU {http[key + '_cpu']:.1f} ms)"

    def plain_ms(key: str) -> str:
        return f"{statistics.median(p[key] for p in plain):.1f} ms in-process ORM, no HTTP"

    prefix = f"3. API, {records:,} records, median over HTTP (the Procfile's gunicorn + uvicorn, access log on):"
    deepest = max(http[key] for key in http if key.startswith(("admin", "results")) and key.endswith("_cold"))
    return [
        Row(
            f"{prefix} GET /status/{{id}}",
            figure("status"),
            plain_ms("status") + " (AsyncResult.result)",
            "—",
            "≤ 5 ms",
            http["status"] <= 5,
        ),
        Row(
            f"{prefix} GET /list?status=SUCCESS&limit=50",
            figure("list"),
            plain_ms("list") + " (TaskResult filter, 50 newest)",
            "—",
            "≤ 10 ms",
            http["list"] <= 10,
        ),
        Row(
            f"{prefix} GET /stats",
            figure("stats"),
            plain_ms("stats") + " (TaskResult count by status)",
            "—",
            "≤ 5 ms",
            http["stats"] <= 5,
        ),
        Row(
            f"{prefix} admin task changelist (logged in)",
            figure("admin"),
            figure("results_admin") + " (the TaskResult changelist, as this project ships it)",
            "—",
            "≤ 50 ms",
            http["admin"] <= 50,
        ),
        Row(
            f"{prefix} any admin page, first request (deep pages at random points, Last, old ?p=10000 links)",
            f"{deepest:.0f} ms at most; deep page warm {http['admin_deep']:.1f} ms",
            "—",
            "—",
            "≤ 300 ms",
            deepest <= 300,
        ),
    ]


def measure_submit(*, clients: int, seconds: float, repeats: int) -> Row:
    """4. POST /ai/generate from `clients` concurrent clients against gunicorn, no worker running
    (the tasks stay queued and are purged after each run) vs bare apply_async from as many threads."""
    limits = {
        # The per-user throttle and unfinished-task limit stay on, out of reach (their checks are part of the cost).
        "AI_GENERATE_THROTTLE_RATE": "1000000/min",
        "MAX_UNFINISHED_TASKS_PER_USER": "100000000",
    }
    env = system_env(**limits)
    token = run_json("bench.submit_load", "token", env=env)["token"]
    pairs = []
    with Gunicorn(env) as web:
        for repeat in range(repeats):
            order = ("http", "bare") if repeat % 2 == 0 else ("bare", "http")
            outcome = {}
            for kind in order:
                args = (web.url, token) if kind == "http" else ("-", "-")
                outcome[kind] = run_json(
                    "bench.submit_load",
                    kind,
                    *args,
                    str(clients),
                    str(seconds),
                    env=env if kind == "http" else bare_env(),
                )
                run_json("bench.submit_load", "purge", env=env if kind == "http" else bare_env())
            pairs.append((outcome["http"], outcome["bare"]))
            log(f"submit {repeat + 1}/{repeats}: http {outcome['http']}, bare {outcome['bare']}")

    def describe(runs: list[dict]) -> str:
        med = {key: statistics.median(run[key] for run in runs) for key in ("per_second", "p50_ms", "p99_ms")}
        errors = sum(run["errors"] for run in runs)
        return f"{med['per_second']:.0f}/s, p50 {med['p50_ms']:.0f} ms, p99 {med['p99_ms']:.0f} ms, {errors} errors"

    http_rate = statistics.median(h["per_second"] for h, _ in pairs)
    errors = sum(h["errors"] for h, _ in pairs)
    return Row(
        f"4. submit rate: POST /ai/generate, {clients} concurrent clients × {seconds:g} s, gunicorn 4×2 threads, "
        "no worker (baseline: bare `apply_async` from as many threads)",
        describe([h for h, _ in pairs]),
        describe([b for _, b in pairs]),
        f"{statistics.median(h['per_second'] / b['per_second'] for h, b in pairs):.2f}",
        "≥ 250/s, no errors",
        http_rate >= 250 and errors == 0,
    )


def measure_memory(*, first: int, total: int, repeats: int, concurrency: int) -> list[Row]:
    """5. Resident memory (worker + pool) after `total` tasks vs after `first`, on a fresh worker."""
    growth: dict[str, list[float]] = {"system": [], "bare": []}
    sizes: dict[str, list[tuple[int, int]]] = {"system": [], "bare": []}
    for repeat in range(repeats):
        for kind in ("system", "bare"):
            with Worker(kind, concurrency=concurrency) as worker:
                run_tasks(kind, first)
                early = worker.rss_bytes()
                run_tasks(kind, total - first)
                late = worker.rss_bytes()
            growth[kind].append(late / early - 1)
            sizes[kind].append((early, late))
            log(f"memory {repeat + 1}/{repeats} {kind}: {early / 2**20:.0f} MiB → {late / 2**20:.0f} MiB")

    def describe(kind: str) -> str:
        early = statistics.median(e for e, _ in sizes[kind]) / 2**20
        late = statistics.median(late for _, late in sizes[kind]) / 2**20
        return f"{statistics.median(growth[kind]):+.1%} ({early:.0f} → {late:.0f} MiB)"

    system_growth = statistics.median(growth["system"])
    return [
        Row(
            f"5. memory: worker RSS growth, {total:,} vs {first:,} tasks (c={concurrency}, prefork)",
            describe("system"),
            describe("bare"),
            "—",
            "growth ≤ 20%",
            system_growth <= 0.2,
        )
    ]


def table(rows: list[Row]) -> str:
    header = ["measurement", "CLAW.AI", "plain Celery + django-celery-results", "ratio", "target", "met", "run"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def profile_table(profile: dict[str, dict[str, float]], tasks: int) -> str:
    if not profile:
        return ""
    lines = [
        (
            f"Where the overhead goes: PostgreSQL's counters (pg_stat_database) per trivial task, over {tasks} tasks "
            "of each kind (`python -m bench.db_profile`; includes the load process's polling, alike for both).\n"
        ),
        "| per task | CLAW.AI | baseline |",
        "|---|---|---|",
    ]
    lines += [
        f"| {name} | {profile['system'][name]:.1f} | {profile['bare'][name]:.1f} |" for name in db_profile.COUNTERS
    ]
    return "\n".join(lines) + "\n\n"


def merged_rows(rows: list[Row], profile: dict, profile_tasks: int, *, keep: bool) -> tuple[list[Row], dict, int]:
    """This run's rows, and the latest rows of the measurements it did not run (from results.json)."""
    saved = json.loads(RESULTS_JSON.read_text()) if keep and RESULTS_JSON.exists() else {}
    measured = {row.number for row in rows}
    kept = [Row(**row) for row in saved.get("rows", []) if Row(**row).number not in measured]
    merged = sorted(kept + rows, key=lambda row: row.number)
    if not profile and saved.get("profile"):
        profile, profile_tasks = saved["profile"], saved["profile_tasks"]
    if keep:
        RESULTS_JSON.write_text(
            json.dumps(
                {"rows": [asdict(row) for row in merged], "profile": profile, "profile_tasks": profile_tasks},
                indent=1,
                ensure_ascii=False,
            )
            + "\n"
        )
    return merged, profile, profile_tasks


def write_results(rows: list[Row], args: argparse.Namespace, profile: dict, profile_tasks: int) -> None:
    rows, profile, profile_tasks = merged_rows(rows, profile, profile_tasks, keep=not args.quick)
    RESULTS.write_text(
        "# Benchmark results\n\n"
        f"Written by `make bench` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        f"{' (--quick: small sizes, not the targets)' if args.quick else ''}.\n\n"
        f"Machine: {os.cpu_count()} cores, {platform.system()} {platform.machine()}, Python "
        f"{platform.python_version()}, Celery {celery.__version__}, Django {django.get_version()}. "
        "The `run` column gives each row's time (UTC), the 1-minute load average at its start and end, and the "
        "number of repeated runs: anything else running on the machine shows up in the figures.\n"
        "Every figure is a median of repeated runs; a ratio is the median of the per-run ratios (each run pairs "
        "the system with its baseline, in alternating order).\n\n"
        + table(rows)
        + "\n\n"
        + (Path(__file__).resolve().parent / "METHOD.md").read_text()
        + "\n"
        + profile_table(profile, profile_tasks)
        # Why the targets that are missed are missed: profiles read by hand, kept beside the code.
        + (Path(__file__).resolve().parent / "ANALYSIS.md").read_text()
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the harness, not the targets")
    parser.add_argument("--only", choices=PARTS, action="append")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 2)
    parser.add_argument(
        "--ai-concurrency",
        type=lambda text: [int(each) for each in text.split(",")],
        default=[100, 200],
        help="measurement 2: concurrent replies per pair of workers, comma-separated (100,200)",
    )
    parser.add_argument("--stream-replies", type=int, help="measurement 6: replies streamed at once (200)")
    parser.add_argument("--idle-streams", type=int, help="measurement 6: idle open streams (1,000)")
    parser.add_argument(
        "--soak", type=float, metavar="MINUTES", help="run only the soak (bench/soak.py) for this long, e.g. 30"
    )
    args = parser.parse_args()
    if args.soak:
        from bench import soak

        report = soak.soak(args.soak, kill_every=300, clients=8)
        return 0 if report["lost"] == 0 and report["duplicate_replies"] == 0 else 1
    # SIGTERM unwinds like Ctrl-C, so every worker started is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.load_at_start = os.getloadavg()[0]
    if not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
        sys.exit("DATABASE_URL and REDIS_URL must be set (`make bench` starts private servers and sets them)")
    if args.quick:
        args.repeats, args.memory_repeats = 2, 1
    only = set(args.only or PARTS)

    log("migrating the benchmark database")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=system_env(), check=True)
    rows: list[Row] = []

    def run(part: str, repeats: int, measure) -> None:
        """Measure one part if asked for, stamping its rows with the time, load and repeats."""
        if part not in only:
            return
        when, load = time.strftime("%H:%M", time.gmtime()), os.getloadavg()[0]
        measured = measure()
        for row in measured if isinstance(measured, list) else [measured]:
            row.run = f"{when}, load {load:.1f}→{os.getloadavg()[0]:.1f}, {repeats} runs"
            rows.append(row)

    run(
        "overhead",
        args.repeats,
        lambda: measure_overhead(tasks=200 if args.quick else 2000, repeats=args.repeats, concurrency=args.concurrency),
    )
    profile, profile_tasks = {}, 50 if args.quick else 500
    if "profile" in only:
        log("profile: database work per task")
        url = os.environ["DATABASE_URL"].replace("postgres://", "postgresql://", 1)
        profile = {kind: db_profile.profile(kind, profile_tasks, url) for kind in ("system", "bare")}
    for concurrency in args.ai_concurrency:
        # At c = 100 the baselines of measurement 2 too; above, CLAW.AI and its threads peer only.
        run(
            "ai",
            args.repeats,
            lambda concurrency=concurrency: measure_ai(
                tasks=(200 if args.quick else 1000) * max(1, concurrency // 100),
                baseline_tasks=20 if args.quick else 100,
                repeats=args.repeats,
                concurrency=concurrency,
                pool_size=20,
                latency=1.0,
                baselines=concurrency == 100,
            ),
        )
    run("publish", args.repeats, lambda: measure_publish(tasks=200 if args.quick else 1000, repeats=args.repeats))
    run(
        "api",
        args.repeats,
        lambda: measure_api(
            records=100_000 if args.quick else 1_000_000,
            repeats=args.repeats,
            requests_per_run=40 if args.quick else 200,
        ),
    )
    run(
        "submit",
        args.repeats,
        lambda: measure_submit(clients=32, seconds=5 if args.quick else 20, repeats=args.repeats),
    )
    run(
        "memory",
        args.memory_repeats,
        lambda: measure_memory(
            first=100, total=1000 if args.quick else 10_000, repeats=args.memory_repeats, concurrency=args.concurrency
        ),
    )
    run(
        "monitoring",
        args.repeats,
        lambda: [
            Row(**row)
            for row in bench_monitoring.measure(
                quick=args.quick, repeats=args.repeats, big_database_url=big_database_url()
            )
        ],
    )
    run(
        "streaming",
        1,
        lambda: [
            Row(**cells)
            for cells in streaming.measure(
                replies=args.stream_replies or (20 if args.quick else 200),
                tokens_per_second=30,
                seconds=10,
                idle_streams=args.idle_streams or (100 if args.quick else 1000),
                baseline_replies=10 if args.quick else 20,
                poll_every=0.5,
                log=log,
            )
        ],
    )
    run(
        "fairness",
        args.repeats,
        lambda: [
            Row(**cells)
            for cells in fairness.measure(
                burst=100 if args.quick else 500, latency=1.0, concurrency=50, repeats=args.repeats, log=log
            )
        ],
    )
    print()
    print(table(rows))
    print(profile_table(profile, profile_tasks))
    write_results(rows, args, profile, profile_tasks)
    log(f"written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
