"""Measurement 6: live replies, end to end, and what plain Celery's users get instead.

The system as `make run` starts it: the web server of the Procfile (gunicorn with uvicorn's ASGI
worker class, 4 processes) and two threads workers, here with 100 threads each so that every
reply is written at once. A loopback provider (bench/fake_llm_server.py, its own process) writes
each reply at `tokens_per_second` for `seconds`, stamping every token with its send time; one SSE
client per reply (bench/stream_clients.py, one asyncio process) reads GET /api/v1/tasks/stream/{id}
and notes when each token arrived. Then, with no worker running, `idle_streams` clients hold
streams of queued replies open while the web server's memory and threads are read. Plain Celery
has no stream: its task reads the same provider to the end, and its user polls AsyncResult.

Returns the rows' cells (bench/__main__.py makes them rows).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from typing import Self

from bench.processes import LOG_DIR, ROOT, Gunicorn, Worker, bare_env, cpu_seconds, run_json, system_env

# The submitting API user's throttle and unfinished-task limit stay on, out of reach: 1,000 idle
# streams are 1,000 queued replies of one user.
LIMITS = {"AI_GENERATE_THROTTLE_RATE": "1000000/min", "MAX_UNFINISHED_TASKS_PER_USER": "100000000"}
# The web server's processes, and the Redis connections each may hold for its open streams: the
# shared readers and the short reads' pool (claw_ai.stream_readers), at their defaults, set here
# so that the bound the idle measurement checks is the one the server ran with.
WEB_PROCESSES = 4
STREAM_CONNECTIONS = {"STREAM_READERS": "4", "STREAM_COMMAND_CONNECTIONS": "8"}


class Provider:
    """bench.fake_llm_server in its own process (its threads would otherwise share a GIL with nothing
    of the system, but with the measuring process), writing paced, stamped replies."""

    def __init__(self, *, tokens_per_second: float, seconds: float) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self._log = (LOG_DIR / "fake-llm-streaming.log").open("w")  # closed in __exit__
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "bench.fake_llm_server", "--port", str(self.port)),
                *("--tokens-per-second", str(tokens_per_second), "--seconds", str(seconds)),
            ],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def __enter__(self) -> Self:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            time.sleep(0.1)
        raise TimeoutError("the fake provider did not listen within 30 s")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(10)
        self._log.close()


def measure(
    *,
    replies: int,
    tokens_per_second: float,
    seconds: float,
    idle_streams: int,
    baseline_replies: int,
    poll_every: float,
    log,
) -> list[dict]:
    env = system_env(**LIMITS, **STREAM_CONNECTIONS)
    token = run_json("bench.submit_load", "token", env=env)["token"]
    tokens = round(tokens_per_second * seconds)
    threads = max(1, -(-replies // 2))  # two workers, enough threads between them for every reply at once
    with (
        Provider(tokens_per_second=tokens_per_second, seconds=seconds) as provider,
        Gunicorn(env, asgi=True, workers=WEB_PROCESSES) as web,
    ):
        llm = {
            "LLM_PROVIDER": "openai",
            "LLM_BASE_URL": provider.base_url,
            "LLM_API_KEY": "x",
            "LLM_TIMEOUT": "60",
            "AI_TASK_RATE_LIMIT": "",  # the per-worker 10/min would be all this measures
            "DJANGO_DB_POOL_MAX_SIZE": "10",
        }
        with contextlib.ExitStack() as stack:
            workers = [
                stack.enter_context(
                    Worker("system", queues="ai_high_priority", pool="threads", concurrency=threads, extra_env=llm)
                )
                for _ in range(2)
            ]
            log(f"streaming: {replies} replies at once, {tokens} tokens each over {seconds:g} s")
            # Where the CPU goes: on a machine others share, a part short of it falls behind.
            parts = {
                "web": web.process.pid,
                "workers": [worker.process.pid for worker in workers],
                "provider": provider.process.pid,
            }
            cpu_before, started = cpu_of(parts), time.monotonic()
            watched = run_json("bench.stream_clients", "watch", web.url, token, str(replies), str(tokens), env=env)
            cpu_after, wall = cpu_of(parts), time.monotonic() - started
        watched["cpu_seconds"] = {part: round(cpu_after[part] - cpu_before[part], 1) for part in parts}
        watched["wall_seconds"] = round(wall, 1)
        log(f"streaming: {watched}")
        log(f"streaming: {idle_streams} idle streams (no worker running)")
        idle = run_json(
            "bench.stream_clients", "idle", web.url, token, str(idle_streams), str(web.process.pid), "5", env=env
        )
        run_json("bench.submit_load", "purge", env=env)  # the idle streams' replies, queued
        log(f"streaming: {idle}")
        with Worker("bare", pool="threads", concurrency=baseline_replies):
            polled = run_json(
                "bench.stream_clients",
                "poll",
                provider.base_url,
                str(baseline_replies),
                str(poll_every),
                env=bare_env(),
            )
        log(f"streaming, plain Celery: {polled}")
    return rows(watched, idle, polled, replies=replies, tokens=tokens, tps=tokens_per_second, seconds=seconds)


def cpu_of(parts: dict) -> dict[str, float]:
    return {
        part: sum(cpu_seconds(pid) for pid in (pids if isinstance(pids, list) else [pids]))
        for part, pids in parts.items()
    }


def rows(watched: dict, idle: dict, polled: dict, *, replies: int, tokens: int, tps: float, seconds: float) -> list:
    whole = watched["streams_ok"] == replies and watched["tokens_received"] == watched["tokens_expected"]
    setup = (
        f"{replies} replies at once, provider {tps:g} tokens/s × {seconds:g} s, one SSE client each; web server as the "
        "Procfile starts it (gunicorn + uvicorn worker, 4 processes), 2 workers -P threads"
    )
    redis_bound = WEB_PROCESSES * sum(int(count) for count in STREAM_CONNECTIONS.values())
    no_stream = (
        f"no stream: the user sees nothing until the task ends (~{seconds:g} s); a {polled['mean_poll_every_s']:g} s "
        f"AsyncResult poller sees the result p50 {polled['finish_to_seen_p50_ms']:.0f} ms, p99 "
        f"{polled['finish_to_seen_p99_ms']:.0f} ms after the provider's last token "
        f"({polled['seen']}/{polled['replies']} replies)"
    )
    return [
        {
            "measurement": f"6. live replies: {setup}: tokens delivered, lag provider chunk → client",
            "system": (
                f"{watched['streams_ok']}/{replies} streams whole and in order ({watched['tokens_received']:,} of "
                f"{watched['tokens_expected']:,} tokens); lag p50 {watched['lag_p50_ms']:.0f} ms, "
                f"p99 {watched['lag_p99_ms']:.0f} ms; the POSTs answered p50 {watched['accepted_p50_s']:.1f} s "
                f"after the start (last {watched['accepted_max_s']:.1f} s), each stream open p50 "
                f"{watched['opened_p50_s']:.1f} s after its POST; CPU used in the {watched['wall_seconds']:g} s: "
                + ", ".join(f"{part} {seconds:g} s" for part, seconds in watched["cpu_seconds"].items())
            ),
            "baseline": no_stream,
            "ratio": "—",
            "target": "every token in order; p99 ≤ 250 ms",
            "met": whole and watched["lag_p99_ms"] <= 250,
        },
        {
            "measurement": "6b. live replies: time to first token added by the system (provider's first chunk → "
            "client's first delta)",
            "system": f"p50 {watched['first_added_p50_ms']:.0f} ms, p99 {watched['first_added_p99_ms']:.0f} ms",
            "baseline": f"first text with the whole reply: p50 {polled['first_token_to_seen_p50_s']:.1f} s after the "
            "provider's first token",
            "ratio": "—",
            "target": "p50 ≤ 50 ms",
            "met": watched["first_added_p50_ms"] <= 50,
        },
        {
            "measurement": f"6c. live replies: {idle['streams']:,} idle open streams, web server (gunicorn + its 4 "
            "workers) memory and threads",
            "system": (
                f"{idle['opened']:,} of {idle['streams']:,} opened"
                + (f" (first answers: {idle['first_events']})" if idle["opened"] < idle["streams"] else "")
                + f"; +{idle['rss_added_mib']:.0f} MiB "
                f"({idle['rss_before_mib']:.0f} → {idle['rss_with_streams_mib']:.0f}); "
                f"threads {idle['threads_before']} → {idle['threads_with_streams']}; database connections "
                f"{idle['database_connections_before']} → {idle['database_connections_with_streams']}; "
                f"Redis connections of the streams {idle['redis_connections_with_streams']}"
            ),
            "baseline": "— (no streams; under WSGI each open stream holds a thread)",
            "ratio": "—",
            "target": f"no thread per stream; ≤ 150 MB added; ≤ {redis_bound} Redis connections "
            f"({WEB_PROCESSES} processes × {STREAM_CONNECTIONS['STREAM_READERS']} readers + "
            f"{STREAM_CONNECTIONS['STREAM_COMMAND_CONNECTIONS']} for short reads)",
            "met": idle["opened"] == idle["streams"]
            and idle["rss_added_mib"] * 2**20 <= 150e6
            and idle["threads_with_streams"] - idle["threads_before"] < idle["streams"] / 10
            and idle["redis_connections_with_streams"] <= redis_bound,
        },
    ]
