"""The periodic jobs are created once, and never overwritten after an operator edits them."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from claw_ai.celery import celery_app
from tasks_app.schedules import PERIODIC_JOBS

pytestmark = pytest.mark.django_db


def setup_periodic_tasks() -> str:
    out = StringIO()
    call_command("setup_periodic_tasks", stdout=out)
    return out.getvalue()


def test_every_job_is_created_enabled_for_a_registered_task():
    # when the command runs on an empty database
    output = setup_periodic_tasks()

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
        assert f"{job.name!r}: created" in output


def test_running_it_again_changes_nothing_an_operator_edited():
    # given the jobs, one of them edited and disabled by an operator
    setup_periodic_tasks()
    edited = PeriodicTask.objects.get(name=PERIODIC_JOBS[1].name)
    edited.interval = IntervalSchedule.objects.create(every=42, period=IntervalSchedule.MINUTES)
    edited.enabled = False
    edited.kwargs = json.dumps({"pending_for_seconds": 60})
    edited.save()
    count = PeriodicTask.objects.count()

    # when the next deploy runs the command again
    output = setup_periodic_tasks()

    # then no job is duplicated and the edit stands
    assert PeriodicTask.objects.count() == count
    edited.refresh_from_db()
    assert (edited.enabled, edited.interval.every, edited.interval.period) == (False, 42, IntervalSchedule.MINUTES)
    assert json.loads(edited.kwargs) == {"pending_for_seconds": 60}
    assert "exists, left as it is" in output


def test_a_deleted_job_comes_back_on_the_next_run():
    # given a job deleted (not disabled) in the admin
    setup_periodic_tasks()
    PeriodicTask.objects.filter(name=PERIODIC_JOBS[0].name).delete()

    # when the command runs again
    setup_periodic_tasks()

    # then it exists again (disable a job to stop it for good)
    assert PeriodicTask.objects.filter(name=PERIODIC_JOBS[0].name).exists()
