"""Publish N trivial tasks and wait until every result is stored; print the timings as JSON.

    python -m bench.load system 2000     (DJANGO_SETTINGS_MODULE=claw_ai.settings.*)
    python -m bench.load bare 2000       (DJANGO_SETTINGS_MODULE=bench.bare_settings)

    python -m bench.load publish system 1000 single   publish only (no worker), one apply_async at a time
    python -m bench.load publish bare 1000 group      ... or as one `group`; the queue is purged after

It runs in its own process because the two need different Django settings: the system's apps
record every published task, which is part of what is measured.
"""

import json
import sys
import time

import django


def main(kind: str, tasks: int) -> None:
    django.setup()
    from django.db.models import Max
    from django.utils import timezone
    from django_celery_results.models import TaskResult

    if kind == "system":
        from bench.system_tasks import noop
    else:
        from bench.bare_app import noop

    started_at = timezone.now()
    started = time.perf_counter()
    for n in range(tasks):
        noop.apply_async(args=[n])
    published = time.perf_counter() - started

    done = TaskResult.objects.filter(task_name=noop.name, status="SUCCESS", date_done__gte=started_at)
    deadline = time.monotonic() + 1200
    while done.count() < tasks:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {done.count()} of {tasks} results stored after 1200 s")
        # The end time is read from the rows below, so polling rarely costs no precision.
        time.sleep(0.5)
    # The last result's own timestamp, not the moment this loop noticed it.
    finished_at = done.aggregate(last=Max("date_done"))["last"]
    seconds = (finished_at - started_at).total_seconds()
    print(json.dumps({"tasks": tasks, "seconds": seconds, "publish_seconds": published, "per_second": tasks / seconds}))


def publish_only(kind: str, tasks: int, how: str) -> None:
    """Measurement 8: publish from one process, no worker running; the system's records are counted."""
    django.setup()
    from celery import group

    if kind == "system":
        from bench.system_tasks import noop
        from tasks_app.models import TaskRecord
    else:
        from bench.bare_app import noop

    noop.app.control.purge()
    noop.apply_async(args=[-1])  # the connections to the broker and the database, made before the clock starts
    started = time.perf_counter()
    if how == "group":
        task_ids = [result.id for result in group(noop.s(n) for n in range(tasks)).apply_async().results]
    else:
        task_ids = [noop.apply_async(args=[n]).id for n in range(tasks)]
    seconds = time.perf_counter() - started
    recorded = TaskRecord.objects.filter(task_id__in=task_ids).count() if kind == "system" else None
    noop.app.control.purge()
    print(json.dumps({"tasks": tasks, "seconds": seconds, "per_second": tasks / seconds, "recorded": recorded}))


if __name__ == "__main__":
    if sys.argv[1] == "publish":
        publish_only(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main(sys.argv[1], int(sys.argv[2]))
