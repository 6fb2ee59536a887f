"""Scheduled jobs edited in django-celery-beat's admin: a running beat picks the edit up, no restart."""

import json
import sys
import uuid

import pytest
from django.forms import BooleanField, MultiWidget
from django.urls import reverse
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tasks_app.models import TaskRecord, TaskState
from tests.support.processes import TestProcess
from tests.support.tasks import record_run
from tests.support.waiting import wait_for
from tests.tasks_app.admin.conftest import csrf_token_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.worker]

PERIODIC_CHANGELIST = reverse("admin:django_celery_beat_periodictask_changelist")


def admin_form_data(response) -> dict:
    """The data a browser would post back from an admin change form, unchanged."""
    form = response.context["adminform"].form
    data = {"csrfmiddlewaretoken": csrf_token_of(response)}
    for name, field in form.fields.items():
        value = form[name].value()
        if isinstance(field.widget, MultiWidget):
            for index, part in enumerate(field.widget.decompress(value)):
                data[f"{name}_{index}"] = "" if part is None else str(part)
        elif isinstance(field, BooleanField):
            if value:
                data[name] = "on"
        else:
            data[name] = "" if value is None else value
    return data


@pytest.fixture
def beat():
    """One real `celery beat` with the database scheduler, against the test database."""
    command = [sys.executable, "-m", "celery", "-A", "claw_ai", "beat", "-S", "django", "-l", "debug"]
    with TestProcess([*command, "--max-interval", "1", "--pidfile="], name=f"beat-{uuid.uuid4().hex[:8]}") as beat:
        yield beat.log_text


def records_of(job: PeriodicTask):
    return TaskRecord.objects.filter(periodic_task_name=job.name)


def test_a_schedule_edited_in_the_admin_fires_at_its_new_time(admin_client, celery_worker, beat, redis_client):
    # given an hourly job, and a running beat that has loaded it
    runs_key = f"runs:{uuid.uuid4().hex}"
    hourly = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.HOURS)
    job = PeriodicTask.objects.create(
        name=f"record a run {uuid.uuid4().hex[:6]}",
        task=record_run.name,
        interval=hourly,
        args=json.dumps(["tick", runs_key]),
    )
    wait_for(lambda: job.name in beat(), timeout=30, what="beat to load the job")
    assert not records_of(job).exists()

    # when an operator changes it to every 2 seconds in the admin
    every_two_seconds = IntervalSchedule.objects.create(every=2, period=IntervalSchedule.SECONDS)
    change_url = reverse("admin:django_celery_beat_periodictask_change", args=[job.pk])
    data = admin_form_data(admin_client.get(change_url))
    data["interval"] = every_two_seconds.pk
    saved = admin_client.post(change_url, data)
    assert saved.status_code == 302, saved.content.decode()[:2000]

    # then the same beat, not restarted, sends it at the new pace, and a real worker runs it
    wait_for(
        lambda: records_of(job).filter(state=TaskState.SUCCESS).count() >= 2,
        timeout=40,
        what="the edited job to run twice",
    )
    assert redis_client.lrange(runs_key, 0, 1) == [b"tick", b"tick"]

    # and disabling it in the admin stops it
    data = admin_form_data(admin_client.get(change_url))
    data.pop("enabled", None)
    assert admin_client.post(change_url, data).status_code == 302
    job.refresh_from_db()
    assert job.enabled is False


def test_run_now_in_the_admin_sends_the_job(admin_client, celery_worker):
    # given a job that would run only tomorrow
    daily = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.DAYS)
    job = PeriodicTask.objects.create(
        name="health check now", task="tasks_app.tasks.maintenance_tasks.health_check", interval=daily
    )

    # when the operator runs it now from the admin
    token = csrf_token_of(admin_client.get(PERIODIC_CHANGELIST))
    response = admin_client.post(
        PERIODIC_CHANGELIST,
        {"action": "run_tasks", "_selected_action": [job.pk], "csrfmiddlewaretoken": token},
    )

    # then it runs on a worker, recorded with the job's name
    assert response.status_code == 302
    wait_for(lambda: records_of(job).filter(state=TaskState.SUCCESS).exists(), timeout=30, what="the job to run")
