"""Publish N trivial tasks and wait until every result is stored; print the timings as JSON.

    python -m bench.load system 2000     (DJANGO_SETTINGS_MODULE=claw_ai.settings.*)
    python -m bench.load bare 2000       (DJANGO_SETTINGS_MODULE=bench.bare_settings)

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


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
