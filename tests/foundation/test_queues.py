"""The four queues are served by a real worker, and results land in PostgreSQL."""

import json

import pytest
from django.conf import settings
from django_celery_results.models import TaskResult

from claw_ai.celery import celery_app
from tasks_app.tasks.maintenance_tasks import health_check
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.mark.parametrize("queue", settings.TASK_QUEUES)
def test_a_task_on_each_queue_runs_and_its_result_is_stored(celery_worker, queue):
    # given a worker consuming all four queues
    # when a task is sent to the queue
    sent = health_check.apply_async(queue=queue)

    # then the worker ran it from that queue and django-celery-results stored the result
    row = wait_for(
        lambda: TaskResult.objects.filter(task_id=sent.id, status="SUCCESS").first(),
        timeout=30,
        what=f"result of {sent.id}",
    )
    result = json.loads(row.result)
    assert result["queue"] == queue
    assert result["worker"] == celery_worker.name
    assert row.task_name == "tasks_app.tasks.maintenance_tasks.health_check"
    assert celery_app.AsyncResult(sent.id).status == "SUCCESS"


@pytest.mark.parametrize(
    ("task_name", "queue"),
    [
        ("tasks_app.tasks.ai_tasks.generate_ai_response", "ai_high_priority"),
        ("tasks_app.tasks.knowledge_tasks.index_document", "knowledge_default"),
        ("tasks_app.tasks.notification_tasks.send_webhook", "notification_default"),
        ("tasks_app.tasks.maintenance_tasks.health_check", "default"),
        ("some.other.task", "default"),
    ],
)
def test_tasks_are_routed_to_queues_by_module(task_name, queue):
    route = celery_app.amqp.router.route({}, task_name)
    assert route["queue"].name == queue
