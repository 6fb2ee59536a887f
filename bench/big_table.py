"""Measurement 3's database: a million task records, and what the benchmark needs to call the API.

    python -m bench.big_table load 1000000    # system settings, DATABASE_URL = the big database
    python -m bench.big_table credentials     # prints {"token", "session_cookie", "task_ids"}
    python -m bench.big_table baseline ids.json   # bench.bare_settings: plain django-celery-results reads

The rows go in with INSERT ... SELECT over generate_series, 100,000 per statement: ordinary
statements, so the statement-level triggers of tasks_app/migrations/0003 keep the TaskCount
counters right (checked after the load). django_celery_results_taskresult gets the same million
(same ids and states), as a system that ran them would have, and is the baseline's table.
The state mix: 85% SUCCESS, 5% FAILURE, 3% REVOKED, 4% PENDING, 2% STARTED, 1% RETRY, created
over the last 30 days, spread over four queues and ten submitting users.
"""

import json
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

import django

BATCH = 100_000
MARK = "bench-big-"  # task id prefix of the loaded rows

STATE = """CASE WHEN mod(i, 100) < 85 THEN 'SUCCESS' WHEN mod(i, 100) < 90 THEN 'FAILURE'
               WHEN mod(i, 100) < 93 THEN 'REVOKED' WHEN mod(i, 100) < 97 THEN 'PENDING'
               WHEN mod(i, 100) < 99 THEN 'STARTED' ELSE 'RETRY' END"""
QUEUE = """CASE WHEN mod(i, 20) < 12 THEN 'ai_high_priority' WHEN mod(i, 20) < 15 THEN 'knowledge_default'
               WHEN mod(i, 20) < 18 THEN 'notification_default' ELSE 'default' END"""
NAME = """CASE WHEN mod(i, 20) < 12 THEN 'tasks_app.tasks.ai_tasks.generate_ai_response'
               WHEN mod(i, 20) < 15 THEN 'tasks_app.tasks.knowledge_tasks.index_document'
               WHEN mod(i, 20) < 18 THEN 'tasks_app.tasks.notification_tasks.send_webhook'
               ELSE 'tasks_app.tasks.maintenance_tasks.cleanup' END"""
CREATED = "now() - make_interval(secs => (%(total)s - i) * 2.592)"  # 30 days for a million

RECORDS = f"""
INSERT INTO tasks_app_taskrecord (task_id, task_name, args, kwargs, queue, priority, user_id, conversation_id,
    periodic_task_name, state, worker, retries, error, traceback, created_at, started_at, done_at, resent_count,
    submitted_by_id)
SELECT '{MARK}' || i, {NAME}, '[]'::jsonb,
    jsonb_build_object('conversation_id', 'conv_' || (mod(i, 50000)), 'user_message', 'question ' || i),
    {QUEUE}, mod(i, 10), 'user_' || (mod(i, 5000)), 'conv_' || (mod(i, 50000)), '', s.state,
    CASE WHEN s.state = 'PENDING' THEN '' ELSE 'worker1@bench' END, CASE WHEN s.state = 'RETRY' THEN 1 ELSE 0 END,
    CASE WHEN s.state = 'FAILURE' THEN 'ProviderRejected: bench' ELSE '' END, '',
    {CREATED}, CASE WHEN s.state = 'PENDING' THEN NULL ELSE {CREATED} + interval '0.1 s' END,
    CASE WHEN s.state IN ('SUCCESS', 'FAILURE', 'REVOKED') THEN {CREATED} + interval '1.2 s' END, 0,
    (%(users)s::int[])[1 + mod(i, 10)]
FROM generate_series(%(start)s, %(stop)s) AS i, LATERAL (SELECT {STATE} AS state) AS s
"""

RESULTS = f"""
INSERT INTO django_celery_results_taskresult (task_id, status, content_type, content_encoding, result, date_done,
    traceback, meta, task_args, task_kwargs, task_name, worker, date_created, periodic_task_name, date_started)
SELECT '{MARK}' || i, {STATE}, 'application/json', 'utf-8',
    CASE WHEN mod(i, 100) BETWEEN 85 AND 92 OR mod(i, 100) = 99  -- FAILURE, REVOKED, RETRY: an exception
        THEN '{{"exc_type": "RuntimeError", "exc_message": ["bench"], "exc_module": "builtins"}}'
        ELSE '{{"conversation_id": "conv_' || (mod(i, 50000)) || '", "response": "bench reply", "cost": 0.0001}}' END,
    {CREATED} + interval '1.2 s', NULL, '{{"children": []}}', '[]', '{{}}', {NAME}, 'worker1@bench',
    {CREATED}, NULL, {CREATED} + interval '0.1 s'
FROM generate_series(%(start)s, %(stop)s) AS i
"""


def load(total: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.db.models import Sum
    from django.utils import timezone

    from monitoring.fold import fold_rollup
    from tasks_app.models import TaskCount, TaskRecord

    have = TaskRecord.objects.filter(task_id__startswith=MARK).count()
    if have >= total:
        print(json.dumps({"loaded": 0, "present": have}))
        return
    users = [get_user_model().objects.get_or_create(username=f"bench-owner-{n}")[0].pk for n in range(10)]
    started = time.perf_counter()
    with connection.cursor() as cursor:
        for start in range(have + 1, total + 1, BATCH):
            stop = min(start + BATCH - 1, total)
            params = {"start": start, "stop": stop, "total": total, "users": users}
            cursor.execute(RECORDS, params)
            cursor.execute(RESULTS, params)
            print(f"loaded {stop:,}", file=sys.stderr, flush=True)
        cursor.execute(
            "ANALYZE tasks_app_taskrecord; ANALYZE django_celery_results_taskresult; ANALYZE tasks_app_taskcount"
        )
    # The dashboard's rollup as a running system's periodic fold would have written it, from the oldest
    # loaded record on (a fold reads only the last minutes: these records were written in the past).
    fold_rollup(since=timezone.now() - timedelta(days=31))
    counted = TaskCount.objects.filter(owner=TaskCount.ALL_OWNERS).aggregate(n=Sum("count"))["n"]
    actual = TaskRecord.objects.count()
    if counted != actual:
        raise SystemExit(f"TaskCount says {counted} tasks, the table holds {actual}")
    print(json.dumps({"loaded": total - have, "seconds": time.perf_counter() - started, "counted": counted}))


def credentials() -> None:
    """A staff user's API token and admin session, and 200 random task ids to ask for."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.db import connection
    from rest_framework.authtoken.models import Token

    user, _ = get_user_model().objects.get_or_create(
        username="bench-staff", defaults={"is_staff": True, "is_superuser": True}
    )
    token, _ = Token.objects.get_or_create(user=user)
    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    with connection.cursor() as cursor:
        # A block sample: random rows without sorting a million.
        cursor.execute("SELECT task_id FROM tasks_app_taskrecord TABLESAMPLE SYSTEM (1) LIMIT 5000")
        ids = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT min(created_at), max(created_at) FROM tasks_app_taskrecord")  # two index reads
        oldest, newest = cursor.fetchone()
    ids = ids[:: max(1, len(ids) // 200)][:200]
    print(
        json.dumps(
            {
                "token": token.key,
                "session_cookie": {settings.SESSION_COOKIE_NAME: session.session_key},
                "task_ids": ids,
                "oldest": oldest.isoformat(),
                "newest": newest.isoformat(),
            }
        )
    )


def baseline(task_ids: list[str], runs: int = 200) -> None:
    """What a plain Celery + django-celery-results team would run: the same reads, as ORM queries."""
    from celery.result import AsyncResult
    from django.db.models import Count
    from django_celery_results.models import TaskResult

    from bench.bare_app import app

    def timed(call) -> float:
        started = time.perf_counter()
        call()
        return (time.perf_counter() - started) * 1000

    status = [timed(lambda i=i: AsyncResult(i, app=app).result) for i in (task_ids * 2)[:runs]]
    listing = [
        timed(lambda: list(TaskResult.objects.filter(status="SUCCESS").order_by("-date_done")[:50]))
        for _ in range(runs // 4)
    ]
    stats = [
        timed(lambda: list(TaskResult.objects.values("status").annotate(n=Count("id")).order_by()))
        for _ in range(max(5, runs // 20))
    ]
    print(
        json.dumps(
            {
                "status": statistics.median(status[5:]),
                "list": statistics.median(listing[2:]),
                "stats": statistics.median(stats[1:]),
            }
        )
    )


if __name__ == "__main__":
    django.setup()
    if sys.argv[1] == "load":
        load(int(sys.argv[2]))
    elif sys.argv[1] == "credentials":
        credentials()
    else:
        baseline(json.loads(Path(sys.argv[2]).read_text()))
