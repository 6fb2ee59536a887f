"""The periodic jobs exist after `migrate`, are never overwritten, and stay deleted once deleted."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from claw_ai.celery import celery_app
from tasks_app.models import DeletedPeriodicJob
from tasks_app.schedules import LIFELINE_JOB_NAME, PERIODIC_JOBS, RESEND_JOB_NAME, SAFETY_JOB_NAMES
from tests.support.schema import client_for

pytestmark = pytest.mark.django_db


def setup_periodic_tasks(*options: str) -> str:
    out = StringIO()
    call_command("setup_periodic_tasks", *options, stdout=out)
    return out.getvalue()


def migrate() -> None:
    call_command("migrate", verbosity=0)


def drop_jobs_without_trace() -> None:
    """Empty the table as a database that never had the jobs (no deletion signals, no tombstones)."""
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {PeriodicTask._meta.db_table}")


def test_every_job_exists_after_migrate_enabled_for_a_registered_task():
    # given a database without the jobs
    drop_jobs_without_trace()

    # when it is migrated (nothing else: no setup_periodic_tasks)
    migrate()

    # then each job exists, enabled, with its schedule, for a task the workers know
    for job in PERIODIC_JOBS:
        task = PeriodicTask.objects.get(name=job.name)
        assert task.enabled
        assert task.task == job.task
        assert task.task in celery_app.tasks
        assert json.loads(task.kwargs) == job.kwargs
        if job.every_seconds:
            assert (task.interval.every, task.interval.period) == (job.every_seconds, IntervalSchedule.SECONDS)
        else:
            assert task.crontab is not None
    assert set(SAFETY_JOB_NAMES) <= {job.name for job in PERIODIC_JOBS}


def test_the_command_creates_missing_jobs_too():
    drop_jobs_without_trace()
    output = setup_periodic_tasks()
    assert PeriodicTask.objects.filter(name__in=[job.name for job in PERIODIC_JOBS]).count() == len(PERIODIC_JOBS)
    assert all(f"{job.name!r}: created" in output for job in PERIODIC_JOBS)


def test_neither_migrate_nor_the_command_changes_what_an_operator_edited():
    # given the jobs, one of them edited and disabled by an operator
    edited = PeriodicTask.objects.get(name=PERIODIC_JOBS[1].name)
    edited.interval = IntervalSchedule.objects.create(every=42, period=IntervalSchedule.MINUTES)
    edited.enabled = False
    edited.kwargs = json.dumps({"pending_for_seconds": 60})
    edited.save()
    count = PeriodicTask.objects.count()

    # when the next deploy migrates and runs the command again
    migrate()
    output = setup_periodic_tasks()

    # then no job is duplicated and the edit stands
    assert PeriodicTask.objects.count() == count
    edited.refresh_from_db()
    assert (edited.enabled, edited.interval.every, edited.interval.period) == (False, 42, IntervalSchedule.MINUTES)
    assert json.loads(edited.kwargs) == {"pending_for_seconds": 60}
    assert "exists, left as it is" in output


def test_a_job_an_operator_deleted_stays_deleted_until_restored():
    # given a job deleted (not disabled) in the admin
    PeriodicTask.objects.get(name=PERIODIC_JOBS[0].name).delete()
    assert DeletedPeriodicJob.objects.filter(name=PERIODIC_JOBS[0].name).exists()

    # when the next deploy migrates and runs the command
    migrate()
    output = setup_periodic_tasks()

    # then it is not created again, and the command says how to bring it back
    assert not PeriodicTask.objects.filter(name=PERIODIC_JOBS[0].name).exists()
    assert "deleted by an operator (--restore-deleted creates it again)" in output

    # and --restore-deleted brings it back, for good
    setup_periodic_tasks("--restore-deleted")
    assert PeriodicTask.objects.filter(name=PERIODIC_JOBS[0].name, enabled=True).exists()
    assert not DeletedPeriodicJob.objects.exists()


def test_deleting_an_operators_own_job_leaves_no_mark():
    hourly = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.HOURS)
    PeriodicTask.objects.create(name="my own job", task="tasks.health_check", interval=hourly).delete()
    assert not DeletedPeriodicJob.objects.exists()


def test_stats_name_the_safety_jobs_that_are_off(alice):
    # given the lifeline disabled and the re-send job deleted
    client = client_for(alice)
    assert client.get("/api/v1/tasks/stats").json()["disabled_safety_jobs"] == []
    PeriodicTask.objects.filter(name=LIFELINE_JOB_NAME).update(enabled=False)
    PeriodicTask.objects.get(name=RESEND_JOB_NAME).delete()

    # when anyone reads /stats
    stats = client.get("/api/v1/tasks/stats").json()

    # then it says so
    assert stats["disabled_safety_jobs"] == [LIFELINE_JOB_NAME, RESEND_JOB_NAME]


def test_the_admin_lists_deleted_system_jobs(admin_client):
    PeriodicTask.objects.get(name=PERIODIC_JOBS[0].name).delete()
    response = admin_client.get("/admin/tasks_app/deletedperiodicjob/")
    assert response.status_code == 200
    assert PERIODIC_JOBS[0].name in response.content.decode()
