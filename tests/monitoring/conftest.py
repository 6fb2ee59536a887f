import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from claw_ai.celery import celery_app
from tests.factories import UserFactory

METRICS_TOKEN = "test-metrics-token"


@pytest.fixture
def metrics_token(settings) -> str:
    settings.METRICS_TOKEN = METRICS_TOKEN
    return METRICS_TOKEN


@pytest.fixture
def operator(db):
    """A user with the named view-metrics permission (not staff)."""
    user = UserFactory(username="operator")
    user.user_permissions.add(Permission.objects.get(codename="view_metrics", content_type__app_label="monitoring"))
    return user


def sample(name: str, /, **labels) -> tuple:
    """The key of one sample in a Scrape or a delta."""
    return (name, tuple(sorted(labels.items())))


class Scrape(dict):
    """{(sample name, ((label, value), ...)): value} of one scrape; a missing sample reads 0."""

    def get_value(self, sample: str, /, **labels) -> float:
        return self.get((sample, tuple(sorted(labels.items()))), 0.0)

    def names(self) -> set[str]:
        return {name for name, _ in self}


def scrape(metrics_token: str) -> Scrape:
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {metrics_token}")
    assert response.status_code == 200, response.content
    samples = Scrape()
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def delta(before: Scrape, after: Scrape) -> dict:
    """Samples that changed, and by how much (counters and histogram series only)."""
    changed = {}
    for key in set(before) | set(after):
        if key[0].endswith(("_total", "_bucket", "_count", "_sum")):
            moved = round(after.get(key, 0.0) - before.get(key, 0.0), 6)
            if moved:
                changed[key] = moved
    return changed


@pytest.fixture
def without_consumer():
    """Make the running workers that consume a queue stop for the test (and resume after)."""
    stopped: list[tuple[str, list[str]]] = []

    def stop(queue: str) -> None:
        replies = celery_app.control.inspect(timeout=1).active_queues() or {}
        consumers = [name for name, queues in replies.items() if any(q["name"] == queue for q in queues)]
        if consumers:
            celery_app.control.cancel_consumer(queue, destination=consumers, reply=True, timeout=1)
            stopped.append((queue, consumers))

    yield stop
    for queue, consumers in stopped:
        celery_app.control.add_consumer(queue, destination=consumers, reply=True, timeout=1)
