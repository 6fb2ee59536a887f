"""Who may read GET /metrics: Prometheus with the bearer token, users with the named permission."""

import importlib

import pytest
from django.test import Client

from monitoring import buckets
from tests.factories import StaffFactory

pytestmark = pytest.mark.django_db


def test_anonymous_scrape_is_refused_with_401(metrics_token):
    response = Client().get("/metrics")

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer wrong-token", "Bearer ", "Basic b3BzOnB3", "Token test-metrics-token"])
def test_a_wrong_token_is_refused_with_401(metrics_token, header):
    assert Client().get("/metrics", HTTP_AUTHORIZATION=header).status_code == 401


def test_no_token_is_accepted_when_none_is_configured(settings):
    settings.METRICS_TOKEN = ""

    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_the_configured_token_reads_the_prometheus_text(metrics_token):
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {metrics_token}")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert b"# TYPE celery_task_sent_total counter" in response.content


def test_a_signed_in_user_needs_the_view_metrics_permission(metrics_token, operator):
    # given: staff status alone is not the permission
    staff = StaffFactory(username="ops")
    client = Client()
    client.force_login(staff)
    # when / then
    assert client.get("/metrics").status_code == 403
    client.force_login(operator)
    assert client.get("/metrics").status_code == 200


def test_the_triggers_bucket_bounds_are_the_python_ones():
    migration = importlib.import_module("monitoring.migrations.0001_initial")

    def parsed(text):
        return tuple(float(bound) for bound in text.split(","))

    assert parsed(migration.TASK_SECONDS) == buckets.TASK_SECONDS
    assert parsed(migration.TOKENS) == buckets.TOKENS
    # Prometheus' le is inclusive: a value on a bound counts in that bound's bucket.
    assert buckets.bucket_of(0.005, buckets.TASK_SECONDS) == "b1"
    assert buckets.bucket_of(0.0051, buckets.TASK_SECONDS) == "b2"
    assert buckets.bucket_of(10_000, buckets.TASK_SECONDS) == f"b{len(buckets.TASK_SECONDS) + 1}"
