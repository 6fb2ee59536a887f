"""Point this (test) process's Celery producer and remote control at another broker."""

import contextlib
import socket
from collections.abc import Callable, Iterator

from claw_ai.celery import celery_app


def _reset_connection_pools() -> None:
    celery_app._pool = None
    if "amqp" in celery_app.__dict__:  # a cached_property, absent until first used
        celery_app.__dict__["amqp"]._producer_pool = None


@contextlib.contextmanager
def broker_at(url: str) -> Iterator[None]:
    conf = celery_app.conf
    saved = conf.broker_url, conf.broker_read_url, conf.broker_write_url, conf.broker_transport
    conf.broker_url = conf.broker_read_url = conf.broker_write_url = url
    if not url.startswith(("redis://", "rediss://")):
        conf.broker_transport = None  # the URL's own transport (amqp), not the project's Redis one
    _reset_connection_pools()
    try:
        yield
    finally:
        conf.broker_url, conf.broker_read_url, conf.broker_write_url, conf.broker_transport = saved
        _reset_connection_pools()


@contextlib.contextmanager
def broker_unreachable() -> Iterator[None]:
    """The producer pointed at a Redis port nobody listens on: every publish fails to connect.

    kombu retries a refused connection, sleeping 2 s then 4 s, for broker_connection_timeout before
    it gives up, even with retry=False: the first refusal says "unreachable" as well (max_retries 0).
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = celery_app.conf
    saved_options = conf.broker_transport_options
    conf.broker_transport_options = {**saved_options, "max_retries": 0}
    try:
        with broker_at(f"redis://127.0.0.1:{port}/0"):  # (its new connections take the options)
            yield
    finally:
        conf.broker_transport_options = saved_options


@contextlib.contextmanager
def queue_watch(queue: str) -> Iterator[Callable[[str], bool]]:
    """A check of whether the broker holds a task's message in `queue`; the queue is emptied after."""
    from tasks_app.maintenance import BrokerView

    with celery_app.connection_for_write() as connection:
        view = BrokerView(connection.default_channel)
        yield lambda task_id: view.holds(task_id, queue)
        connection.default_channel.queue_purge(queue)
