"""Measurement 7 (issue 15): one chat user's burst, and the next user's single reply behind it.

Chat user A sends `burst` replies (each to a conversation of its own), then chat user B sends one.
How long after its submission does B's reply start? The provider (bench/fake_llm_server.py) answers
each call in `latency` s; both systems run two threads workers of `concurrency` threads each, as
`make run` starts this one.

- CLAW.AI: at most AI_MAX_CONCURRENT_PER_USER of A's replies are in the workers' hands at once,
  the rest wait in PostgreSQL (conversations/admission.py), so B's reply goes straight to a free
  thread.
- Plain Celery (bench/bare_app.py, threads, the same shape): the queue is first-in first-out, so
  B's task starts after every one of A's has been taken: about burst ÷ (workers × concurrency) ×
  latency seconds.

    python -m bench --only fairness               # from the benchmark entry point
    python -m bench.fairness system|bare BURST    # one side, in its own process (prints JSON)

The system side cancels A's replies that are still waiting once B's has started (their end is
not what is measured; tests/conversations/test_admission.py shows they all complete).
"""

from __future__ import annotations

import contextlib
import json
import statistics
import sys
import time
import uuid

import django

from bench.fake_llm_server import FakeLLMServer
from bench.processes import Worker, bare_env, run_json, system_env

WORKERS = 2
AI_QUEUE = "ai_high_priority"
# No limit on the submitting API user's unfinished tasks, none on the cluster's AI task rate: what is
# measured is the order in which the workers take the replies.
LIMITS = {"MAX_UNFINISHED_TASKS_PER_USER": "0", "AI_TASK_RATE_LIMIT": ""}


def measure(*, burst: int, latency: float, concurrency: int, repeats: int, log) -> list[dict]:
    """Median seconds from B's submission to its start, both systems, `repeats` runs each."""
    provider = FakeLLMServer(latency=latency).start_in_thread()
    llm = {"LLM_PROVIDER": "openai", "LLM_BASE_URL": provider.base_url, "LLM_API_KEY": "x", **LIMITS}
    waits: dict[str, list[float]] = {"system": [], "bare": []}
    try:
        for repeat in range(repeats):
            for kind in ("system", "bare") if repeat % 2 == 0 else ("bare", "system"):
                env = system_env(**llm) if kind == "system" else bare_env(**llm)
                with contextlib.ExitStack() as stack:
                    for _ in range(WORKERS):
                        pool = {"DJANGO_DB_POOL_MAX_SIZE": "10"} if kind == "system" else {}
                        worker = Worker(
                            kind, concurrency=concurrency, pool="threads", queues=AI_QUEUE, extra_env={**llm, **pool}
                        )
                        stack.enter_context(worker)
                    outcome = run_json("bench.fairness", kind, str(burst), provider.base_url, env=env, timeout=600)
                waits[kind].append(outcome["b_waited"])
                log(f"fairness {repeat + 1}/{repeats} {kind}: B started {outcome['b_waited']:.2f} s after it was sent")
    finally:
        provider.shutdown()
    system, bare = statistics.median(waits["system"]), statistics.median(waits["bare"])
    return [
        {
            "measurement": (
                f"7. Fairness: chat user A sends {burst} replies, then user B one; seconds from B's submission "
                f"to its start (provider latency {latency:g} s; {WORKERS} workers -P threads -c {concurrency}; "
                "baseline: plain Celery, same shape)"
            ),
            "system": f"{system:.2f} s",
            "baseline": f"{bare:.2f} s",
            "ratio": f"{bare / system:.0f}× sooner" if system > 0 else "—",
            "target": "≤ 2 s",
            "met": system <= 2.0,
        }
    ]


def _system(burst: int) -> dict:
    """A's burst then B's reply, through the service the API uses; B's wait from its task record."""
    from django.contrib.auth import get_user_model

    from claw_ai.celery import celery_app
    from conversations import services
    from tasks_app.models import TaskRecord, TaskState
    from tasks_app.services import TaskStateConflict, cancel_task

    celery_app.control.purge()
    api_user, _ = get_user_model().objects.get_or_create(username="bench-fairness")
    run = uuid.uuid4().hex[:8]

    def send(user_id: str, n: int) -> str:
        return services.submit_ai_generation(
            conversation_id=f"fair-{run}-{user_id}-{n}",
            user_message=f"question {n}",
            temperature=0.7,
            user_id=f"{user_id}-{run}",
            submitted_by=api_user,
        ).task_id

    burst_ids = [send("A", n) for n in range(burst)]
    sent = time.time()
    b_id = send("B", 0)
    record = TaskRecord.objects.filter(task_id=b_id)
    deadline = time.monotonic() + 300
    while (started := record.values_list("started_at", flat=True).first()) is None:
        if time.monotonic() > deadline:
            raise SystemExit("B's reply did not start within 300 s")
        time.sleep(0.02)
    waited = started.timestamp() - sent
    # A's replies still waiting are not what is measured: cancel them, and let the running ones end.
    for pending in TaskRecord.objects.filter(task_id__in=burst_ids, state=TaskState.PENDING):
        with contextlib.suppress(TaskStateConflict):
            cancel_task(record=pending)
    return {"b_waited": waited}


def _bare(burst: int, provider_url: str) -> dict:
    """The same with plain Celery: B's start is when its result turns STARTED (task_track_started)."""
    from bench.bare_app import app, reply

    app.control.purge()
    for _ in range(burst):
        reply.apply_async(args=[provider_url])
    sent = time.time()
    b = reply.apply_async(args=[provider_url])
    deadline = time.monotonic() + 300
    while b.state == "PENDING":
        if time.monotonic() > deadline:
            raise SystemExit("B's task did not start within 300 s")
        time.sleep(0.02)
    waited = time.time() - sent
    b.get(timeout=300)  # the burst is all taken by now; let the workers finish it
    return {"b_waited": waited}


if __name__ == "__main__":
    django.setup()
    kind, size = sys.argv[1], int(sys.argv[2])
    print(json.dumps(_system(size) if kind == "system" else _bare(size, sys.argv[3])))
