"""A deploy that only migrates: the lifeline and re-send jobs exist, and a real beat and worker run them.

The test migrates a brand-new database of its own (not the test database, whose jobs the test
run itself created) and points a beat and a worker at it.
"""

import subprocess
import sys
import uuid

import psycopg
import pytest
from django.db import connection

from tasks_app.models import TaskRecord, TaskState
from tasks_app.schedules import LIFELINE_JOB_NAME, PERIODIC_JOBS, RESEND_JOB_NAME
from tests.support import processes
from tests.support.beat import Beat
from tests.support.processes import ROOT, process_env
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.worker]

SAFETY_TASKS = {job.task for job in PERIODIC_JOBS if job.name in (LIFELINE_JOB_NAME, RESEND_JOB_NAME)}


@pytest.fixture
def fresh_database(django_db_blocker):
    """An empty database beside the test database, dropped afterwards; yields its URL."""
    with django_db_blocker.unblock():
        test_url = processes.test_database_url()
        name = f"{connection.settings_dict['NAME']}_fresh_{uuid.uuid4().hex[:6]}"
    server = test_url.rsplit("/", 1)[0]
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{server}/{name}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_after_migrate_alone_the_safety_jobs_exist_and_run(fresh_database, start_worker):
    # given a new database on which only `migrate` ran
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=process_env(DATABASE_URL=fresh_database),
        check=True,
        timeout=120,
    )
    with psycopg.connect(fresh_database, autocommit=True) as db:
        jobs = dict(db.execute("SELECT name, enabled FROM django_celery_beat_periodictask").fetchall())
        assert jobs[LIFELINE_JOB_NAME] is True
        assert jobs[RESEND_JOB_NAME] is True
        # an operator's edit, so the test need not wait out their 2 and 5 minutes: every second,
        # on a queue of this test's own (no other test's worker takes them)
        queue = f"fresh-{uuid.uuid4().hex[:6]}"
        every_second = db.execute(
            "INSERT INTO django_celery_beat_intervalschedule (every, period) VALUES (1, 'seconds') RETURNING id"
        ).fetchone()[0]
        db.execute(
            "UPDATE django_celery_beat_periodictask SET interval_id = %s, queue = %s WHERE name = ANY(%s)",
            [every_second, queue, [LIFELINE_JOB_NAME, RESEND_JOB_NAME]],
        )

    # when a worker and a beat start on it
    worker = start_worker(queues=[queue], concurrency=2, env={"DATABASE_URL": fresh_database})
    beat = Beat(env={"DATABASE_URL": fresh_database})
    try:

        def safety_jobs_ran() -> bool:
            with psycopg.connect(fresh_database, autocommit=True) as db:
                done = db.execute(
                    f"SELECT DISTINCT task_name FROM {TaskRecord._meta.db_table} WHERE state = %s",
                    [TaskState.SUCCESS],
                ).fetchall()
            return {name for (name,) in done} >= SAFETY_TASKS

        # then beat sends both jobs and the worker runs them
        wait_for(safety_jobs_ran, timeout=60, interval=0.5, what=f"both safety jobs to run; beat log:\n{beat.log_text}")
        assert "is disabled or deleted" not in beat.log_text()
    finally:
        beat.stop()
        worker.kill()  # a throwaway database: no need to wait for the job it is running
