"""Held messages filed under their worker, handed back when it is dead; a stuck consumer is noticed."""

import time
import uuid
import weakref

import pytest
from django.test import override_settings

from claw_ai import broker
from claw_ai.celery import celery_app
from tasks_app.liveness import WORKERS_KEY, Heartbeat, alive_key, rescue_dead_worker
from tests.support.tasks import record_run

# transaction=True: tasks are published on commit
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def holding_as():
    def hold(name: str) -> None:
        broker.holder = name

    yield hold
    broker.holder = None


def test_a_dead_workers_held_message_goes_back_to_the_front_of_its_queue(holding_as, redis_client):
    # given a message taken (unacknowledged) by a worker, which then stopped beating
    queue, dead = f"held-{uuid.uuid4().hex[:6]}", f"dead-{uuid.uuid4().hex[:6]}@x"
    sent = record_run.apply_async(args=["x", "unused"], queue=queue)
    with celery_app.connection_for_write() as connection:
        channel = connection.default_channel
        holding_as(dead)
        taken = channel.basic_get(queue)
        holding_as(None)
        assert taken is not None
        assert taken.headers["id"] == sent.id
        assert redis_client.sismember(broker.held_key(dead), taken.delivery_tag)
        assert redis_client.hexists(channel.unacked_key, taken.delivery_tag)

        # when a live worker rescues it
        handed_back = rescue_dead_worker(channel, dead, {"queues": [queue]}, rescuer="live@x")

        # then the message is in its queue again, and nothing is left filed under the dead worker
        assert handed_back == [sent.id]
        assert not redis_client.hexists(channel.unacked_key, taken.delivery_tag)
        assert not redis_client.exists(broker.held_key(dead))
        again = channel.basic_get(queue, no_ack=True)
        assert again is not None
        assert again.headers["id"] == sent.id


def test_an_acknowledged_message_leaves_the_workers_file(holding_as, redis_client):
    queue, worker = f"acked-{uuid.uuid4().hex[:6]}", f"w-{uuid.uuid4().hex[:6]}@x"
    record_run.apply_async(args=["x", "unused"], queue=queue)
    with celery_app.connection_for_write() as connection:
        holding_as(worker)
        taken = connection.default_channel.basic_get(queue)
        taken.ack()
    assert not redis_client.exists(broker.held_key(worker))


def test_a_heartbeat_registers_the_worker_with_a_ttl(redis_client):
    worker = f"beating-{uuid.uuid4().hex[:6]}@x"
    heartbeat = Heartbeat(worker, ["default"])
    try:
        heartbeat.beat()
        assert 0 < redis_client.pttl(alive_key(worker)) <= 15_000
        assert redis_client.hexists(WORKERS_KEY, worker)
    finally:
        heartbeat.stop()  # holds nothing: leaves no trace
    assert not redis_client.exists(alive_key(worker))
    assert not redis_client.hexists(WORKERS_KEY, worker)


class FakeQoS:
    def __init__(self, *, free: bool) -> None:
        self.free = free

    def can_consume(self) -> bool:
        return self.free


class ConsumingChannel:
    def __init__(self, idle_for: float, *, free: bool) -> None:
        self.last_fetch_at = time.monotonic() - idle_for
        self.qos = FakeQoS(free=free)


@override_settings(WORKER_STUCK_AFTER_SECONDS=30)
@pytest.mark.parametrize(
    ("idle_for", "free", "stuck"),
    [(5, True, False), (31, True, True), (31, False, False)],
    ids=["fetching", "idle-with-free-slots", "busy"],
)
def test_a_worker_is_stuck_only_when_it_has_free_slots_and_stopped_fetching(idle_for, free, stuck, monkeypatch):
    channel = ConsumingChannel(idle_for, free=free)
    monkeypatch.setattr(broker, "consuming_channels", weakref.WeakSet([channel]))
    assert Heartbeat("watch@x", ["default"]).stuck() is stuck
