"""Gauges read from the broker and the workers; a scrape with the broker down."""

import socket
import uuid

import pytest
import redis

from claw_ai.celery import celery_app
from monitoring.broker import priority_keys
from tasks_app.models import TaskRecord, TaskState
from tests.factories import TaskRecordFactory
from tests.monitoring.conftest import delta, scrape
from tests.support.broker import broker_at
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def empty_queue(redis_client: redis.Redis):
    """A task queue nobody consumes during the test, emptied before and after it."""
    queue = "knowledge_default"
    redis_client.delete(*priority_keys(queue))
    yield queue
    redis_client.delete(*priority_keys(queue))


def test_queue_length_is_the_number_of_queued_messages(without_consumer, empty_queue, metrics_token):
    # given: no worker consumes the queue
    without_consumer(empty_queue)
    # when: 20 tasks are queued, over several priorities (one broker list each)
    for number in range(20):
        celery_app.send_task("tests.record_run", args=[str(number), "unused"], queue=empty_queue, priority=number % 10)
    # then
    first = scrape(metrics_token)
    assert first.get_value("celery_queue_length", queue=empty_queue) == 20
    assert first.get_value("celery_queue_length", queue="notification_default") == 0
    # and the oldest message's age grows while it waits
    age = first.get_value("claw_queue_oldest_message_age_seconds", queue=empty_queue)
    assert age > 0
    wait_for(
        lambda: scrape(metrics_token).get_value("claw_queue_oldest_message_age_seconds", queue=empty_queue) > age,
        what="the oldest message's age to grow",
    )


def test_a_scrape_with_the_broker_down_answers_with_the_rest(metrics_token):
    # given: a task record, and a broker that does not answer
    TaskRecordFactory(task_name="tests.record_run", queue="default")
    before = scrape(metrics_token)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    # when
    with broker_at(f"redis://127.0.0.1:{closed_port}/0"):
        during = scrape(metrics_token)
    # then: broker figures absent, the rest present, the error counted
    assert "celery_queue_length" not in during.names()
    assert "claw_queue_oldest_message_age_seconds" not in during.names()
    assert during.get_value("celery_task_sent_total", name="tests.record_run", queue="default") == 1
    assert during.get_value("claw_scrape_source_up", source="broker") == 0
    assert during.get_value("claw_scrape_source_up", source="database") == 1
    assert delta(before, during) == {("claw_scrape_errors_total", (("source", "broker"),)): 1}
    # and the next scrape reads the broker again
    assert scrape(metrics_token).get_value("claw_scrape_source_up", source="broker") == 1


def test_two_worker_processes_add_up(start_worker, without_consumer, metrics_token, redis_client):
    # given: two workers, one task slot each, the only consumers of a queue
    queue = "notification_default"
    without_consumer(queue)
    first = start_worker(queues=[queue], concurrency=1)
    second = start_worker(queues=[queue], concurrency=1)
    before = scrape(metrics_token)
    key = f"metrics:release:{uuid.uuid4()}"
    # when: two long tasks, so each worker takes one
    results = [celery_app.send_task("tests.wait_for_key", args=[key], queue=queue) for _ in range(2)]

    def running_on_both():
        running = scrape(metrics_token)
        return all(running.get_value("celery_worker_tasks_active", hostname=w.name) == 1 for w in (first, second))

    # then: each worker's figures, from any process
    wait_for(running_on_both, timeout=30, what="one active task on each worker")
    wait_for(
        lambda: all(scrape(metrics_token).get_value("celery_worker_up", hostname=w.name) == 1 for w in (first, second)),
        timeout=30,
        what="both workers up",
    )
    redis_client.set(key, 1, ex=60)
    wait_for(
        lambda: TaskRecord.objects.filter(task_id__in=[r.id for r in results], state=TaskState.SUCCESS).count() == 2,
        what="both tasks to succeed",
    )
    assert set(TaskRecord.objects.filter(task_id__in=[r.id for r in results]).values_list("worker", flat=True)) == {
        first.name,
        second.name,
    }
    labels = (("name", "tests.wait_for_key"), ("queue", queue))
    expected = {f"celery_task_{event}_total": 2 for event in ("sent", "received", "started", "succeeded")}

    def moved():
        changed = delta(before, scrape(metrics_token))
        return {name: changed.get((name, labels), 0) for name in expected}

    wait_for(lambda: moved() == expected, timeout=20, what=f"{expected}")
