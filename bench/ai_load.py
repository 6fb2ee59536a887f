"""AI reply generations for measurement 2: queue N and time how fast they are answered.

    python -m bench.ai_load publish 1000 ids.json [users]   # queue N through the service the API uses
    python -m bench.ai_load wait ids.json           # after a worker started: wait, print timings
    python -m bench.ai_load e2e 1000 ids.json       # workers running: publish N and wait, print timings
    python -m bench.ai_load bare-publish 1000 <provider> ids.json   # plain Celery (bench.bare_settings):
    python -m bench.ai_load bare-wait ids.json                     #   the same three
    python -m bench.ai_load bare-e2e 1000 <provider> ids.json

`publish` then `wait` measure the worker alone (drain): the time runs from the first task's start
to the last one's end (both from the task records), so neither the publisher's speed nor the
worker's start-up counts. `e2e` and `bare-e2e` measure what a user sees: from the moment before the
first `apply_async` to the last stored result, publishing included, with the workers already
running; they report the drain figure of the same run too (first start to last end).

Both publish from one process, 8 threads, each keeping its database connection (as a web
server's threads do). Each reply gets its own conversation, so no two tasks wait on one row, and
belongs to one of `users` chat users (50 by default): with AI_MAX_CONCURRENT_PER_USER = 2, at most
2 × users replies are in the workers' hands at once, so measurement 2 gives c ÷ 2 users.
Prints JSON on its last line.
"""

import json
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import django

FINISHED = ("SUCCESS", "FAILURE", "REVOKED")
PUBLISHERS = 8
DEADLINE = 1800


def publish(tasks: int, ids_path: Path, *, purge: bool = True, users: int = 50) -> dict:
    from django.contrib.auth import get_user_model

    from claw_ai.celery import celery_app
    from conversations import services

    if purge:
        celery_app.control.purge()  # nothing left over from an interrupted run
    user, _ = get_user_model().objects.get_or_create(
        username="bench-ai", defaults={"is_superuser": True, "email": "bench-ai@example.com"}
    )
    run = uuid.uuid4().hex[:8]

    def submit(n: int) -> str:
        return services.submit_ai_generation(
            conversation_id=f"bench-{run}-{n}",
            user_message=f"question {n}",
            temperature=0.7,
            # Chat users of this run only: an interrupted run's replies (purged from the broker) keep their places.
            user_id=f"bench-user-{run}-{n % users}",
            submitted_by=user,
        ).task_id

    started = time.perf_counter()
    with ThreadPoolExecutor(PUBLISHERS) as pool:
        task_ids = list(pool.map(submit, range(tasks)))
    ids_path.parent.mkdir(parents=True, exist_ok=True)  # .devdata/bench on a fresh clone
    ids_path.write_text(json.dumps(task_ids))
    return {"tasks": tasks, "publish_seconds": time.perf_counter() - started}


def wait(ids_path: Path, *, since=None) -> dict:
    """Wait for every task of ids_path to finish; the drain time, and with `since` the end-to-end time."""
    from django.db.models import Count, Max, Min

    from tasks_app.models import TaskRecord

    task_ids = json.loads(ids_path.read_text())
    records = TaskRecord.objects.filter(task_id__in=task_ids)
    deadline = time.monotonic() + DEADLINE
    while (finished := records.filter(state__in=FINISHED).count()) < len(task_ids):
        if time.monotonic() > deadline:
            raise SystemExit(f"only {finished} of {len(task_ids)} finished after {DEADLINE} s")
        time.sleep(0.5)  # the times come from the rows, so polling costs no precision
    states = dict(records.values_list("state").annotate(n=Count("id")))
    span = records.aggregate(first=Min("started_at"), last=Max("done_at"))
    return timings(len(task_ids), states, first_started=span["first"], last_done=span["last"], since=since)


def timings(tasks: int, states: dict, *, first_started, last_done, since=None) -> dict:
    drain = (last_done - first_started).total_seconds()
    outcome = {"tasks": tasks, "seconds": drain, "per_second": tasks / drain, "states": states}
    if since is not None:
        end_to_end = (last_done - since).total_seconds()
        outcome.update(e2e_seconds=end_to_end, e2e_per_second=tasks / end_to_end)
    return outcome


def end_to_end(tasks: int, ids_path: Path, users: int = 50) -> dict:
    from django.utils import timezone

    since = timezone.now()
    published = publish(tasks, ids_path, purge=False, users=users)
    return {**wait(ids_path, since=since), **published}


def bare_publish(tasks: int, provider_url: str, ids_path: Path, *, purge: bool = True) -> dict:
    """Plain Celery: queue N replies from 8 threads, as `publish` does."""
    from bench.bare_app import app, reply

    if purge:
        app.control.purge()
    started = time.perf_counter()
    with ThreadPoolExecutor(PUBLISHERS) as pool:
        task_ids = list(pool.map(lambda _: reply.apply_async(args=[provider_url]).id, range(tasks)))
    ids_path.parent.mkdir(parents=True, exist_ok=True)  # .devdata/bench on a fresh clone
    ids_path.write_text(json.dumps(task_ids))
    return {"tasks": tasks, "publish_seconds": time.perf_counter() - started}


def bare_end_to_end(tasks: int, provider_url: str, ids_path: Path) -> dict:
    """Plain Celery + django-celery-results, end to end: the peer of `e2e`."""
    from django.utils import timezone

    since = timezone.now()
    published = bare_publish(tasks, provider_url, ids_path, purge=False)
    return {**bare_wait(ids_path, since=since), **published}


def bare_wait(ids_path: Path, *, since=None) -> dict:
    """`wait` for plain Celery: the times come from django-celery-results' rows."""
    from django.db.models import Count, Max, Min
    from django_celery_results.models import TaskResult

    task_ids = json.loads(ids_path.read_text())
    tasks = len(task_ids)
    results = TaskResult.objects.filter(task_id__in=task_ids)
    deadline = time.monotonic() + DEADLINE
    while (finished := results.filter(status__in=FINISHED).count()) < tasks:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {finished} of {tasks} finished after {DEADLINE} s")
        time.sleep(0.5)
    states = dict(results.values_list("status").annotate(n=Count("id")))
    span = results.aggregate(first=Min("date_started"), last=Max("date_done"))
    return timings(tasks, states, first_started=span["first"], last_done=span["last"], since=since)


if __name__ == "__main__":
    django.setup()
    command = sys.argv[1]
    users = {"users": int(sys.argv[4])} if command in ("publish", "e2e") and len(sys.argv) > 4 else {}
    if command == "publish":
        result = publish(int(sys.argv[2]), Path(sys.argv[3]), **users)
    elif command == "wait":
        result = wait(Path(sys.argv[2]))
    elif command == "e2e":
        result = end_to_end(int(sys.argv[2]), Path(sys.argv[3]), **users)
    elif command == "bare-publish":
        result = bare_publish(int(sys.argv[2]), sys.argv[3], Path(sys.argv[4]))
    elif command == "bare-wait":
        result = bare_wait(Path(sys.argv[2]))
    else:
        result = bare_end_to_end(int(sys.argv[2]), sys.argv[3], Path(sys.argv[4]))
    print(json.dumps(result))
