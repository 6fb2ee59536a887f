"""AI reply generations for measurement 2: queue N, then time how fast a worker drains them.

    python -m bench.ai_load publish 1000 ids.json   # queue N through the service the API uses
    python -m bench.ai_load wait ids.json           # after a worker started: wait, print timings

Publishing first, with no worker consuming, measures the worker alone: the time runs from the
first task's start to the last one's end (both from the task records), so neither the
publisher's speed nor the worker's start-up counts. Each task gets its own conversation, so no
two tasks wait on one row. Prints JSON on its last line.
"""

import json
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import django

FINISHED = ("SUCCESS", "FAILURE", "REVOKED")


def publish(tasks: int, ids_path: Path) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from claw_ai.celery import celery_app
    from conversations import services

    celery_app.control.purge()  # nothing left over from an interrupted run
    user, _ = get_user_model().objects.get_or_create(
        username="bench-ai", defaults={"is_superuser": True, "email": "bench-ai@example.com"}
    )
    run = uuid.uuid4().hex[:8]

    def submit(n: int) -> str:
        try:
            return services.submit_ai_generation(
                conversation_id=f"bench-{run}-{n}",
                user_message=f"question {n}",
                temperature=0.7,
                user_id=f"bench-user-{n % 50}",
                submitted_by=user,
            ).task_id
        finally:
            connection.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        task_ids = list(pool.map(submit, range(tasks)))
    ids_path.write_text(json.dumps(task_ids))
    print(json.dumps({"tasks": tasks, "publish_seconds": time.perf_counter() - started}))


def wait(ids_path: Path) -> None:
    from django.db.models import Count, Max, Min

    from tasks_app.models import TaskRecord

    task_ids = json.loads(ids_path.read_text())
    records = TaskRecord.objects.filter(task_id__in=task_ids)
    deadline = time.monotonic() + 1800
    while (finished := records.filter(state__in=FINISHED).count()) < len(task_ids):
        if time.monotonic() > deadline:
            raise SystemExit(f"only {finished} of {len(task_ids)} finished after 1800 s")
        time.sleep(0.5)
    states = dict(records.values_list("state").annotate(n=Count("id")))
    span = records.aggregate(first=Min("started_at"), last=Max("done_at"))
    seconds = (span["last"] - span["first"]).total_seconds()
    print(
        json.dumps(
            {"tasks": len(task_ids), "seconds": seconds, "per_second": len(task_ids) / seconds, "states": states}
        )
    )


if __name__ == "__main__":
    django.setup()
    if sys.argv[1] == "publish":
        publish(int(sys.argv[2]), Path(sys.argv[3]))
    else:
        wait(Path(sys.argv[2]))
