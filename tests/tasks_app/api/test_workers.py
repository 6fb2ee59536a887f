"""GET /workers, POST /workers/pool/restart and /workers/shutdown against real workers."""

import os
import signal
import time

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.forms import ReadOnlyPasswordHashWidget
from django.contrib.auth.models import Permission
from django.forms import BooleanField, MultiWidget
from django.test import Client
from django.urls import reverse

from tasks_app.models import WorkerControlEvent
from tests.factories import StaffFactory, SuperuserFactory
from tests.support.schema import client_for
from tests.support.waiting import wait_for
from tests.tasks_app.admin.conftest import csrf_token_of
from tests.tasks_app.api.conftest import API

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def test_workers_lists_live_workers(celery_worker, staff_client):
    # when staff ask for the workers
    started = time.monotonic()
    response = staff_client.get(f"{API}/workers")
    elapsed = time.monotonic() - started

    # then the session worker is described, within about a second
    assert response.status_code == 200
    assert elapsed < 2
    worker = next(w for w in response.json()["workers"] if w["name"] == celery_worker.name)
    assert worker["pool"] == "prefork"
    assert worker["concurrency"] == 4
    assert set(worker["queues"]) >= {"ai_high_priority", "knowledge_default", "notification_default", "default"}
    assert worker["uptime"] >= 0
    assert worker["active"] == [] or isinstance(worker["active"], list)


def test_a_worker_that_does_not_reply_is_named(celery_worker, staff_client, start_worker):
    # given a worker that was seen, then stops answering (its process is frozen)
    silent = start_worker(queues=["default"], concurrency=1)
    assert silent.name in {w["name"] for w in staff_client.get(f"{API}/workers").json()["workers"]}
    os.kill(silent.process.pid, signal.SIGSTOP)
    try:
        # when the workers are listed
        started = time.monotonic()
        body = staff_client.get(f"{API}/workers").json()

        # then the answer still comes within about a second, naming the silent worker
        assert time.monotonic() - started < 2
        assert silent.name in body["not_replying"]
        assert celery_worker.name in {w["name"] for w in body["workers"]}
    finally:
        os.kill(silent.process.pid, signal.SIGCONT)


def test_worker_endpoints_need_the_control_workers_permission(alice_client):
    assert alice_client.get(f"{API}/workers").status_code == 403
    assert alice_client.post(f"{API}/workers/pool/restart", {}, format="json").status_code == 403
    response = alice_client.post(f"{API}/workers/shutdown", {"all": True}, format="json")
    assert response.status_code == 403
    assert response.json()["message"]


def test_pool_restart_of_a_prefork_worker(staff_client, celery_worker):
    worker = celery_worker  # prefork; its pool comes back by itself

    response = staff_client.post(f"{API}/workers/pool/restart", {"destination": [worker.name]}, format="json")

    assert response.status_code == 200
    assert response.json()["results"] == [{"worker": worker.name, "ok": True, "message": "reload started"}]


def test_pool_restart_of_a_threads_worker_is_refused_clearly(staff_client, start_worker):
    worker = start_worker(queues=["default"], concurrency=1, pool="threads")

    response = staff_client.post(f"{API}/workers/pool/restart", {"destination": [worker.name]}, format="json")

    assert response.status_code == 409
    assert "threads pool cannot be restarted" in response.json()["message"]


def test_pool_restart_of_an_unknown_worker_is_404(staff_client):
    response = staff_client.post(f"{API}/workers/pool/restart", {"destination": ["nobody@nowhere"]}, format="json")

    assert response.status_code == 404
    assert "nobody@nowhere" in response.json()["message"]


@pytest.mark.parametrize("payload", [{}, {"all": False}, {"destination": []}, {"destination": ["a"], "all": True}])
def test_shutdown_needs_a_destination_or_all(staff_client, payload):
    response = staff_client.post(f"{API}/workers/shutdown", payload, format="json")

    assert response.status_code == 400
    assert response.json()["errors"]


def test_shutdown_of_one_worker(staff_client, start_worker):
    worker = start_worker(queues=["default"], concurrency=1)

    response = staff_client.post(f"{API}/workers/shutdown", {"destination": [worker.name]}, format="json")

    assert response.status_code == 200
    assert response.json()["results"] == [{"worker": worker.name, "ok": True, "message": "shutdown requested"}]
    wait_for(lambda: worker.process.poll() is not None, timeout=30, what="the worker to exit")


def test_staff_alone_cannot_shut_workers_down_until_granted_and_the_grant_and_the_call_are_logged(start_worker):
    # given carol, staff with no permission, and a worker
    carol = StaffFactory(username="carol")
    worker = start_worker(queues=["default"], concurrency=1)
    shutdown = {"destination": [worker.name]}

    # then she may not shut it down (nor look at workers)
    assert client_for(carol).post(f"{API}/workers/shutdown", shutdown, format="json").status_code == 403
    assert client_for(carol).get(f"{API}/workers").status_code == 403
    assert worker.process.poll() is None

    # when an administrator grants her tasks_app.control_workers in the admin
    administrator = SuperuserFactory(username="root")
    admin = Client(enforce_csrf_checks=True)
    admin.force_login(administrator)
    change_url = reverse("admin:auth_user_change", args=[carol.pk])
    form = admin.get(change_url)
    permission = Permission.objects.get(codename="control_workers")
    posted = admin.post(change_url, {**admin_form_data(form), "user_permissions": [permission.pk]})
    assert posted.status_code == 302, posted.context and posted.context["adminform"].form.errors

    # then the grant is in the admin's history, naming who granted it
    grant = LogEntry.objects.get(object_id=str(carol.pk), content_type__model="user")
    assert grant.user == administrator
    assert "User permissions" in grant.get_change_message()

    # and she may shut the worker down; the call is logged with her name, in the database and by the worker
    response = client_for(carol).post(f"{API}/workers/shutdown", shutdown, format="json")
    assert response.status_code == 200
    wait_for(lambda: worker.process.poll() is not None, timeout=30, what="the worker to exit")
    event = WorkerControlEvent.objects.get()
    assert (event.action, event.username, event.destination) == ("shutdown", "carol", [worker.name])
    assert "shutdown requested by carol" in worker.log_text()


def admin_form_data(response) -> dict:
    """The data a browser would post back from an admin change form, unchanged."""
    form = response.context["adminform"].form
    data = {"csrfmiddlewaretoken": csrf_token_of(response)}
    for name, field in form.fields.items():
        value = form[name].value()
        if isinstance(field.widget, MultiWidget):  # date and time in two inputs
            for index, part in enumerate(field.widget.decompress(value)):
                data[f"{name}_{index}"] = "" if part is None else str(part)
        elif isinstance(field, BooleanField):
            if value:
                data[name] = "on"
        elif isinstance(value, list):
            data[name] = [str(item) for item in value]
        elif value is not None and not isinstance(field.widget, ReadOnlyPasswordHashWidget):
            data[name] = value
    return data
