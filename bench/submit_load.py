"""Measurement 4: submissions from many concurrent clients for a fixed time.

    python -m bench.submit_load http URL TOKEN 32 20     # POST URL/api/v1/tasks/ai/generate
    python -m bench.submit_load bare - - 32 20           # the baseline: bare Celery apply_async

HTTP clients: one asyncio process, one keep-alive connection per client, each sending one
request after another until the time is up. The requests are written as raw HTTP/1.1 so the
load generator costs the machine (whose two cores it shares with the server) as little as it
can: a `requests` client spends about as much CPU per request as the server does. The bare
baseline runs its clients as threads over 4 processes (apply_async needs Celery's own client).
Prints {"requests", "per_second", "p50_ms", "p99_ms", "errors", "statuses"} as JSON.
"""

import asyncio
import collections
import json
import os
import statistics
import sys
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from urllib.parse import urlsplit

PROCESSES = 4


async def http_client(  # noqa: C901 (a hand-written HTTP/1.1 keep-alive loop: each branch is a protocol case)
    url: str, token: str, deadline: float, latencies: list, statuses: collections.Counter
) -> None:
    """One client: a keep-alive connection, POSTing until the deadline (reconnecting if it closes)."""
    address = urlsplit(url)
    reader = writer = None
    n = 0
    while time.time() < deadline:
        # A chat backend submits for its many chat users (a fresh one per request here): one chat user's
        # submissions take turns under the admission's per-user lock (issue 15), which this does not measure.
        body = json.dumps(
            {
                "conversation_id": f"bench-{uuid.uuid4().hex}",
                "user_message": f"question {n}",
                "user_id": f"user-{uuid.uuid4().hex[:12]}",
            }
        ).encode()
        request = (
            f"POST /api/v1/tasks/ai/generate HTTP/1.1\r\nHost: {address.netloc}\r\n"
            f"Authorization: Token {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        started = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(address.hostname, address.port)
            writer.write(request)
            status_line = await asyncio.wait_for(reader.readline(), 30)
            if not status_line:
                raise ConnectionError("server closed the connection")
            code: int | str = int(status_line.split()[1])
            length, close = 0, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "connection" and value.strip().lower() == "close":
                    close = True
            await reader.readexactly(length)
            if close:
                writer.close()
                writer = None
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, IndexError) as error:
            code = type(error).__name__
            if writer is not None:
                writer.close()
            writer = None
        latencies.append((time.perf_counter() - started) * 1000)
        statuses[code] += 1
        n += 1
    if writer is not None:
        writer.close()


def run_http(url: str, token: str, clients: int, seconds: float, start_at: float) -> dict:
    latencies: list[float] = []
    statuses: collections.Counter = collections.Counter()

    async def main() -> None:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        deadline = start_at + seconds
        await asyncio.gather(*(http_client(url, token, deadline, latencies, statuses) for _ in range(clients)))

    asyncio.run(main())
    return {"latencies": latencies, "statuses": {str(k): v for k, v in statuses.items()}}


def bare_client():
    import django

    django.setup()
    from bench.bare_app import noop

    def call(n: int) -> int:
        noop.apply_async(args=[n], kwargs={})
        return 202

    return call


def run_bare(clients: int, seconds: float, start_at: float) -> dict:
    """One process's share of the bare clients (threads); returns their latencies and status codes."""
    latencies: list[float] = []
    statuses: collections.Counter = collections.Counter()
    lock = threading.Lock()

    def client() -> None:
        call = bare_client()
        mine, codes, n = [], collections.Counter(), 0
        time.sleep(max(0.0, start_at - time.time()))
        deadline = start_at + seconds
        while time.time() < deadline:
            started = time.perf_counter()
            try:
                code = call(n)
            except Exception as error:  # noqa: BLE001 (a refused connection, a timeout, anything: counted as an error)
                code = type(error).__name__
            mine.append((time.perf_counter() - started) * 1000)
            codes[code] += 1
            n += 1
        with lock:
            latencies.extend(mine)
            statuses.update(codes)

    bare_client()  # django.setup() once, before the threads
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"latencies": latencies, "statuses": {str(k): v for k, v in statuses.items()}}


def main(kind: str, url: str, token: str, clients: int, seconds: float) -> None:
    start_at = time.time() + 3  # every process set up before the clock starts
    if kind == "http":
        parts = [run_http(url, token, clients, seconds, start_at)]
    else:
        shares = [clients // PROCESSES + (1 if i < clients % PROCESSES else 0) for i in range(PROCESSES)]
        with ProcessPoolExecutor(PROCESSES) as pool:
            parts = list(pool.map(run_bare, *zip(*[(n, seconds, start_at) for n in shares], strict=True)))
    latencies = sorted(x for part in parts for x in part["latencies"])
    statuses: collections.Counter = collections.Counter()
    for part in parts:
        statuses.update(part["statuses"])
    ok = statuses.get("202", 0)
    print(
        json.dumps(
            {
                "requests": len(latencies),
                "per_second": ok / seconds,
                "p50_ms": statistics.median(latencies),
                "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
                "errors": len(latencies) - ok,
                "statuses": dict(statuses),
                "pid": os.getpid(),
            }
        )
    )


def token() -> None:
    """An ordinary (non-staff) API user's token: the throttle and the unfinished-task limit apply."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    user, _ = get_user_model().objects.get_or_create(username="bench-submitter")
    print(json.dumps({"token": Token.objects.get_or_create(user=user)[0].key}))


def purge() -> None:
    """Drop the queued messages the run left (no worker consumed them), for either app."""
    import django

    django.setup()
    if os.environ["DJANGO_SETTINGS_MODULE"] == "bench.bare_settings":
        from bench.bare_app import app
    else:
        from claw_ai.celery import celery_app as app
    print(json.dumps({"purged": app.control.purge()}))


if __name__ == "__main__":
    if sys.argv[1] == "token":
        token()
    elif sys.argv[1] == "purge":
        purge()
    else:
        main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
