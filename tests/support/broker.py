"""Point this (test) process's Celery producer and remote control at another broker."""

import contextlib
from collections.abc import Iterator

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
