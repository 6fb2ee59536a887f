"""Measurement 6's clients: people watching replies stream, and plain Celery's pollers beside them.

    python -m bench.stream_clients watch URL TOKEN 200 300        # 200 replies, 300 tokens expected each
    python -m bench.stream_clients idle URL TOKEN 1000 GUNICORN_PID 5
    python -m bench.stream_clients poll PROVIDER_URL 20 0.5      # plain Celery (bare_env)

`watch`: POSTs N /ai/generate at once and opens one GET /api/v1/tasks/stream/{id} per reply as soon
as it is accepted; every token the provider wrote carries its send time (bench/fake_llm_server.py),
so each arrival gives that token's lag through the system, provider -> worker -> Redis -> web
server -> client. `idle`: opens M streams of queued replies (no worker running: nothing to send)
and reads the web server's memory and threads before and with them open. `poll`: plain Celery's
user, who has no stream: it polls AsyncResult every P s and sees the reply when the task ended.

One asyncio process speaking raw HTTP/1.1 (the SSE body is chunked), so the clients take little
of the CPU they share with the system. Prints JSON on its last line.
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

TOKEN = re.compile(r"t(\d+)@(\d+\.\d+) ")


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * share + 0.5) - 1))]


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    status = int((await reader.readline()).split()[1])
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


async def submit(url: str, token: str, conversation_id: str, user_id: str) -> str:
    """POST /ai/generate for chat user `user_id`; the accepted task's id.

    Each reply is a different chat user's: one user's replies run AI_MAX_CONCURRENT_PER_USER at a
    time (issue 15), and these are so many people watching their replies at once.
    """
    address = urlsplit(url)
    body = json.dumps(
        {"conversation_id": conversation_id, "user_message": "Tell me a long story", "user_id": user_id}
    ).encode()
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        writer.write(
            (
                f"POST /api/v1/tasks/ai/generate HTTP/1.1\r\nHost: {address.netloc}\r\nConnection: close\r\n"
                f"Authorization: Token {token}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
        status, headers = await _read_head(reader)
        answer = json.loads(await reader.readexactly(int(headers["content-length"])))
    finally:
        writer.close()
    if status != 202:
        raise RuntimeError(f"/ai/generate answered {status}: {answer}")
    return answer["task_id"]


class EventStream:
    """One open GET /api/v1/tasks/stream/{id}: its events with the time each arrived."""

    def __init__(self, url: str, token: str, task_id: str) -> None:
        self.address = urlsplit(url)
        self.token = token
        self.task_id = task_id
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.address.hostname, self.address.port)
        self.writer.write(
            (
                f"GET /api/v1/tasks/stream/{self.task_id} HTTP/1.1\r\nHost: {self.address.netloc}\r\n"
                f"Authorization: Token {self.token}\r\nAccept: text/event-stream\r\n\r\n"
            ).encode()
        )
        status, headers = await _read_head(self.reader)
        if status != 200:
            raise RuntimeError(f"stream of {self.task_id} answered {status}")
        self.chunked = headers.get("transfer-encoding", "").lower() == "chunked"

    async def _pieces(self):
        while True:
            if self.chunked:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                if size == 0:
                    return
                data = (await self.reader.readexactly(size + 2))[:-2]
            else:
                data = await self.reader.read(65536)
                if not data:
                    return
            yield data, time.time()

    async def events(self):
        """(event, data, arrived) for each event; comments (keep-alives) skipped."""
        buffer = b""
        async for data, arrived in self._pieces():
            buffer += data
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                fields = dict(
                    line.split(": ", 1) for line in block.decode().split("\n") if line and not line.startswith(":")
                )
                if "event" in fields:
                    yield fields["event"], json.loads(fields.get("data") or "{}"), arrived

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def watch_one(url: str, token: str, number: int, run: str, started: float) -> dict:
    task_id = await submit(url, token, f"bench-stream-{run}-{number}", f"bench-reader-{number}")
    accepted = time.time()
    stream = EventStream(url, token, task_id)
    await stream.open()
    opened = time.time()
    tokens: list[tuple[int, float, float]] = []  # (number, sent at, arrived)
    text, final, response = "", None, None
    try:
        async for event, data, arrived in stream.events():
            if event == "delta":
                text += data["text"]
                tokens.extend(
                    (int(match.group(1)), float(match.group(2)), arrived) for match in TOKEN.finditer(data["text"])
                )
            elif event == "reset":
                text, tokens = "", []
            elif event in ("done", "error", "cancelled"):
                final = event
                response = (data.get("result") or {}).get("response")
                break
    finally:
        stream.close()
    return {
        "task_id": task_id,
        "final": final,
        "numbers": [number for number, _, _ in tokens],
        "lags_ms": [(arrived - sent) * 1000 for _, sent, arrived in tokens],
        "first_added_ms": (tokens[0][2] - tokens[0][1]) * 1000 if tokens else None,
        "from_start_to_first_s": (tokens[0][2] - started) if tokens else None,
        "accepted_s": accepted - started,
        "opened_s": opened - accepted,
        "text_matches": response == text,
    }


def watch(url: str, token: str, replies: int, expected_tokens: int) -> dict:
    async def main() -> list:
        run, started = f"{time.time():.0f}", time.time()
        return await asyncio.gather(
            *(watch_one(url, token, n, run, started) for n in range(replies)), return_exceptions=True
        )

    results = asyncio.run(main())
    failed = [repr(result) for result in results if isinstance(result, BaseException)]
    streams = [result for result in results if not isinstance(result, BaseException)]
    complete = [s for s in streams if s["final"] == "done" and s["numbers"] == list(range(expected_tokens))]
    lags = [lag for s in streams for lag in s["lags_ms"]]
    firsts = [s["first_added_ms"] for s in streams if s["first_added_ms"] is not None]
    waits = [s["from_start_to_first_s"] for s in streams if s["from_start_to_first_s"] is not None]
    return {
        "replies": replies,
        "streams_ok": len(complete),
        "text_matches_saved_reply": sum(s["text_matches"] for s in streams),
        "tokens_received": sum(len(s["numbers"]) for s in streams),
        "tokens_expected": replies * expected_tokens,
        "out_of_order_or_missing": [s["task_id"] for s in streams if s not in complete][:5],
        # For each of those: how many tokens came, and the first place where they leave 0, 1, 2, ...
        "broken_streams": [
            {
                "task_id": s["task_id"],
                "final": s["final"],
                "tokens": len(s["numbers"]),
                "first_wrong_at": next((i for i, n in enumerate(s["numbers"]) if n != i), None),
                "around_it": s["numbers"][max(0, (next((i for i, n in enumerate(s["numbers"]) if n != i), 0)) - 2) :][
                    :6
                ],
            }
            for s in streams
            if s not in complete
        ][:5],
        "finals": {final: sum(s["final"] == final for s in streams) for final in {s["final"] for s in streams}},
        "lag_p50_ms": percentile(lags, 0.5),
        "lag_p99_ms": percentile(lags, 0.99),
        "lag_max_ms": max(lags, default=None),
        "first_added_p50_ms": percentile(firsts, 0.5),
        "first_added_p99_ms": percentile(firsts, 0.99),
        "run_start_to_first_token_p50_s": percentile(waits, 0.5),
        # Where a slow start comes from: the POST's answer, and the stream's head after it.
        "accepted_p50_s": percentile([s["accepted_s"] for s in streams], 0.5),
        "accepted_max_s": max((s["accepted_s"] for s in streams), default=None),
        "opened_p50_s": percentile([s["opened_s"] for s in streams], 0.5),
        "opened_max_s": max((s["opened_s"] for s in streams), default=None),
        "errors": failed[:5],
        "error_count": len(failed),
        "client_cpu_seconds": round(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]), 1),
    }


def server_usage(master_pid: int) -> dict:
    """Resident memory and threads of the web server: gunicorn's master and its workers."""
    from bench.processes import descendants, rss_of

    pids = [master_pid, *descendants(master_pid)]
    threads = {}
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                threads[pid] = int(line.split()[1])
    return {
        "rss_mib": sum(rss_of(pid) for pid in pids) / 2**20,
        "threads": sum(threads.values()),
        "per_process": threads,
    }


def database_connections() -> int:
    """Connections open to the system's database (the web server's among them)."""
    import os

    import psycopg

    url = os.environ["DATABASE_URL"].replace("postgres://", "postgresql://", 1)
    with psycopg.connect(url) as connection:
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        return connection.execute(query).fetchone()[0] - 1  # not this one


def stream_redis_connections() -> int:
    """Connections the web server's open streams hold to Redis: named claw-stream-* by
    claw_ai.stream_readers (the shared readers) and claw_ai.redis_clients (their short reads)."""
    import os

    import redis

    with redis.Redis.from_url(os.environ["REDIS_URL"]) as client:
        return sum(1 for found in client.client_list() if found.get("name", "").startswith("claw-stream"))


def idle(url: str, token: str, streams: int, master_pid: int, settle: float) -> dict:  # noqa: C901 (one measurement, in order)
    async def main() -> dict:  # noqa: C901 (open, wait, read the figures, close: in order)
        run = f"{time.time():.0f}"
        gate = asyncio.Semaphore(32)

        async def accepted(n: int) -> str:
            async with gate:
                return await submit(url, token, f"bench-idle-{run}-{n}", f"bench-idler-{n}")

        task_ids = await asyncio.gather(*(accepted(n) for n in range(streams)))
        before = server_usage(master_pid)
        connections_before = database_connections()
        opened = [EventStream(url, token, task_id) for task_id in task_ids]
        first_events: list[str] = []  # one per stream: its first event, or why it did not open
        readers_ready = asyncio.Event()

        def settled(outcome: str) -> None:
            first_events.append(outcome)
            if len(first_events) == streams:
                readers_ready.set()

        async def hold(stream: EventStream) -> None:
            try:
                async with gate:
                    await stream.open()
            except RuntimeError as refused:  # "stream of <id> answered <status>"
                settled(f"refused {str(refused).rsplit(' ', 1)[-1]}")
                return
            except (OSError, ValueError, IndexError) as failed:
                settled(f"refused {type(failed).__name__}")
                return
            async for event, data, _ in stream.events():
                if len(first_events) < streams:
                    settled(f"{event}:{data.get('status')}")
                    break
            await asyncio.Event().wait()  # hold the stream open, idle, until cancelled

        readers = [asyncio.create_task(hold(stream)) for stream in opened]
        await asyncio.wait_for(readers_ready.wait(), timeout=300)
        await asyncio.sleep(settle)  # the streams sit idle: their first record check passes
        during = server_usage(master_pid)
        connections_during = database_connections()
        redis_during = stream_redis_connections()
        for reader in readers:
            reader.cancel()
        for stream in opened:
            stream.close()
        outcomes: dict[str, int] = {}
        for outcome in first_events:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        return {
            "streams": streams,
            "opened": sum(count for outcome, count in outcomes.items() if not outcome.startswith("refused")),
            "first_events": outcomes,
            "rss_before_mib": before["rss_mib"],
            "rss_with_streams_mib": during["rss_mib"],
            "rss_added_mib": during["rss_mib"] - before["rss_mib"],
            "threads_before": before["threads"],
            "threads_with_streams": during["threads"],
            "threads_per_process": during["per_process"],
            "database_connections_before": connections_before,
            "database_connections_with_streams": connections_during,
            "redis_connections_with_streams": redis_during,
        }

    return asyncio.run(main())


def poll(provider_url: str, replies: int, every: float) -> dict:
    """Plain Celery: the bare app's reply task, its result polled with AsyncResult every `every` s."""
    import django

    django.setup()
    from bench.bare_app import reply

    results = [reply.apply_async(args=[provider_url]) for _ in range(replies)]
    seen: dict[str, float] = {}
    deadline = time.monotonic() + 600
    while len(seen) < replies and time.monotonic() < deadline:
        for result in results:
            if result.id not in seen and result.ready():
                seen[result.id] = time.time()
        time.sleep(every)
    to_result, to_first_text = [], []
    for result in results:
        if result.id not in seen or not result.successful():
            continue
        stamps = [float(match.group(2)) for match in TOKEN.finditer(result.result["response"])]
        to_result.append((seen[result.id] - stamps[-1]) * 1000)
        to_first_text.append(seen[result.id] - stamps[0])
    return {
        "replies": replies,
        "seen": len(to_result),
        "finish_to_seen_p50_ms": percentile(to_result, 0.5),
        "finish_to_seen_p99_ms": percentile(to_result, 0.99),
        "first_token_to_seen_p50_s": percentile(to_first_text, 0.5),
        "mean_poll_every_s": every,
        "polls_per_reply": statistics.mean(to_first_text) / every if to_first_text else None,
    }


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "watch":
        outcome = watch(args[0], args[1], int(args[2]), int(args[3]))
    elif command == "idle":
        outcome = idle(args[0], args[1], int(args[2]), int(args[3]), float(args[4]))
    else:
        outcome = poll(args[0], int(args[1]), float(args[2]))
    print(json.dumps(outcome))
