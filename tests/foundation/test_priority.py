"""Priority 9 is the highest (the seed's meaning), on Redis and on RabbitMQ."""

import uuid

import pytest

from tests.support.tasks import record_run
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def test_queued_priority_9_tasks_run_before_priority_0(broker, start_worker, redis_client):
    # given a queue holding interleaved tasks of priority 0 and 9, and no worker yet
    queue = f"priority-probe-{uuid.uuid4().hex[:6]}"
    order_key = f"order:{queue}"
    for i in range(6):
        record_run.apply_async(args=[f"p0-{i}", order_key], queue=queue, priority=0)
        record_run.apply_async(args=[f"p9-{i}", order_key], queue=queue, priority=9)

    # when one worker with a single slot (taking one message at a time) works through them
    worker = start_worker(queues=[queue], concurrency=1, pool="solo")

    wait_for(lambda: redis_client.llen(order_key) == 12, timeout=60, what="all 12 tasks to run")
    worker.stop()

    # then every priority-9 task ran before any priority-0 task
    order = [label.decode() for label in redis_client.lrange(order_key, 0, -1)]
    assert [label[:2] for label in order] == ["p9"] * 6 + ["p0"] * 6, order


def test_the_record_keeps_the_priority_the_sender_chose():
    # The transport only chooses the Redis list; the message keeps the sender's priority, so a
    # Celery retry (which re-sends with delivery_info["priority"]) keeps the seed's meaning.
    from tasks_app.models import TaskRecord

    sent = record_run.apply_async(args=["x", f"keep:{uuid.uuid4().hex}"], priority=8)
    assert TaskRecord.objects.get(task_id=sent.id).priority == 8
