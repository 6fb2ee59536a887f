"""Periodic job actions in the admin need the change permission, and leave an audit trail.

No worker is needed: the job's `enabled` flag shows a disable, and a task record (written when a
task is published) shows a run. Each job sends to its own queue no worker reads, emptied after.
"""

import uuid

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import reverse
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tasks_app.models import TaskRecord
from tests.factories import StaffFactory
from tests.tasks_app.admin.conftest import csrf_token_of

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:django_celery_beat_periodictask_changelist")
ACTIONS = ("run_tasks", "enable_tasks", "disable_tasks", "toggle_tasks")


def staff_client(django_user_model, *codenames: str) -> tuple[Client, object]:
    user = StaffFactory(username=f"staff-{uuid.uuid4().hex[:6]}")
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="django_celery_beat", codename__in=codenames)
    )
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client, user


@pytest.fixture
def job(redis_client):
    """An enabled daily health check, sending to a queue of its own that no worker consumes."""
    queue = f"unconsumed-{uuid.uuid4().hex[:8]}"
    job = PeriodicTask.objects.create(
        name=f"health check {queue}",
        task="tasks_app.tasks.maintenance_tasks.health_check",
        interval=IntervalSchedule.objects.create(every=1, period=IntervalSchedule.DAYS),
        queue=queue,
    )
    yield job
    keys = redis_client.keys(f"{queue}*") + redis_client.keys(f"_kombu.binding*.{queue}")
    if keys:
        redis_client.delete(*keys)


def offered_actions(client) -> set[str]:
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    form = response.context["action_form"]  # None when no action at all is offered
    return set() if form is None else {name for name, _label in form.fields["action"].choices}


def post_action(client, action: str, job: PeriodicTask, capture_on_commit):
    """Select the job on the changelist and pick the action, as a browser posts it.

    ClawTask publishes on commit when called inside a transaction (this test's is one), so the
    callbacks run here: a refused run must be refused, not merely deferred.
    """
    token = csrf_token_of(client.get(CHANGELIST))
    with capture_on_commit(execute=True) as callbacks:
        response = client.post(
            CHANGELIST,
            {"action": action, "_selected_action": [job.pk], "index": 0, "csrfmiddlewaretoken": token},
        )
    assert response.status_code in (200, 302), response.content[:500]
    return callbacks


def log_entries_of(job: PeriodicTask):
    return LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(PeriodicTask), object_id=str(job.pk), action_flag=CHANGE
    )


def test_a_view_only_user_is_not_offered_the_actions(django_user_model, job):
    # given staff who may only view schedules
    viewer, _user = staff_client(django_user_model, "view_periodictask")

    # when they open the changelist, then none of the job actions is offered
    assert offered_actions(viewer).isdisjoint(ACTIONS)


def test_a_view_only_user_cannot_run_a_job(django_user_model, job, django_capture_on_commit_callbacks):
    # given staff who may only view schedules
    viewer, _user = staff_client(django_user_model, "view_periodictask")

    # when they post "Run selected tasks" anyway
    callbacks = post_action(viewer, "run_tasks", job, django_capture_on_commit_callbacks)

    # then nothing is published (no record, nothing waiting to be sent) and nothing is logged
    assert callbacks == []
    assert not TaskRecord.objects.filter(periodic_task_name=job.name).exists()
    assert not log_entries_of(job).exists()


def test_a_view_only_user_cannot_disable_a_job(django_user_model, job, django_capture_on_commit_callbacks):
    # given staff who may only view schedules
    viewer, _user = staff_client(django_user_model, "view_periodictask")

    # when they post "Disable selected tasks" anyway
    post_action(viewer, "disable_tasks", job, django_capture_on_commit_callbacks)

    # then the job is still enabled, and nothing is logged
    job.refresh_from_db()
    assert job.enabled is True
    assert not log_entries_of(job).exists()


def test_an_operator_who_may_change_jobs_runs_one_and_the_log_names_them(
    django_user_model, job, django_capture_on_commit_callbacks
):
    # given staff who may change schedules, to whom the actions are offered
    operator, user = staff_client(django_user_model, "change_periodictask")
    assert set(ACTIONS) <= offered_actions(operator)

    # when they run the job now
    post_action(operator, "run_tasks", job, django_capture_on_commit_callbacks)

    # then it is published on its queue, and the admin log names who ran which job
    record = TaskRecord.objects.get(periodic_task_name=job.name)
    assert (record.task_name, record.queue) == (job.task, job.queue)
    entry = log_entries_of(job).get()
    assert entry.user == user
    assert entry.object_repr == str(job)
    assert entry.get_change_message() == "Ran now"


def test_an_operator_who_may_change_jobs_disables_one_and_the_log_names_them(
    django_user_model, job, django_capture_on_commit_callbacks
):
    operator, user = staff_client(django_user_model, "change_periodictask")

    post_action(operator, "disable_tasks", job, django_capture_on_commit_callbacks)

    job.refresh_from_db()
    assert job.enabled is False
    entry = log_entries_of(job).get()
    assert (entry.user, entry.get_change_message()) == (user, "Disabled")


def test_a_toggle_logs_which_way_each_job_went(django_user_model, job, django_capture_on_commit_callbacks):
    # given one enabled job and one disabled job
    stopped = PeriodicTask.objects.create(
        name=f"{job.name} (stopped)", task=job.task, interval=job.interval, queue=job.queue, enabled=False
    )
    operator, _user = staff_client(django_user_model, "change_periodictask")

    # when both are toggled
    token = csrf_token_of(operator.get(CHANGELIST))
    operator.post(
        CHANGELIST,
        {"action": "toggle_tasks", "_selected_action": [job.pk, stopped.pk], "index": 0, "csrfmiddlewaretoken": token},
    )

    # then each went the other way, and its log entry says which
    job.refresh_from_db()
    stopped.refresh_from_db()
    assert (job.enabled, stopped.enabled) == (False, True)
    assert log_entries_of(job).get().get_change_message() == "Disabled (toggled)"
    assert log_entries_of(stopped).get().get_change_message() == "Enabled (toggled)"
