import socket

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

from claw_ai.celery import celery_app
from tests.factories import StaffFactory
from tests.support.schema import SchemaCheckingClient, client_for

API = "/api/v1/tasks"


OPERATOR_PERMISSIONS = [
    ("tasks_app", "view_all_tasks"),
    ("tasks_app", "manage_all_tasks"),
    ("tasks_app", "control_workers"),
    ("conversations", "view_all"),
    ("conversations", "change_all"),
]


def grant_operator(user):
    """Put `user` in an "Operators" group holding the named permissions (as an admin would)."""
    group, _created = Group.objects.get_or_create(name="Operators")
    group.permissions.set(
        Permission.objects.get(content_type__app_label=app, codename=codename) for app, codename in OPERATOR_PERMISSIONS
    )
    user.groups.add(group)
    return get_user_model().objects.get(pk=user.pk)  # fresh: no cached permissions


@pytest.fixture
def staff(db):
    """An operator: staff, and granted the named permissions through a group."""
    return grant_operator(StaffFactory(username="ops"))


@pytest.fixture
def staff_client(staff):
    return client_for(staff)


@pytest.fixture
def alice_client(alice):
    return client_for(alice)


@pytest.fixture
def bob_client(bob):
    return client_for(bob)


@pytest.fixture
def anonymous_client():
    return SchemaCheckingClient()


@pytest.fixture
def broker_down():
    """Point the web process's producer at a closed loopback port (a broker that is down)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    original = celery_app.conf.broker_write_url

    def reset_pools():
        celery_app._pool = None
        celery_app.__dict__["amqp"]._producer_pool = None

    celery_app.conf.broker_write_url = f"redis://127.0.0.1:{port}/0"
    reset_pools()
    yield
    celery_app.conf.broker_write_url = original
    reset_pools()


GENERATE = {"conversation_id": "conv_123", "user_message": "你好", "temperature": 0.7, "user_id": "user_456"}
