"""Flower as `make run` and compose start it: `python -m claw_ai.flower_server [Flower options]`.

This is `celery -A claw_ai flower` with one change: Flower 2.2 serves /metrics (Prometheus: the
names of tasks and workers, counts, runtimes) without the basic auth every other page and API
asks for; here /metrics asks too, so a scraper needs the credentials. /healthcheck stays open: it
says "OK" and nothing else, and the container healthcheck calls it without credentials.

The credentials come from the environment (FLOWER_BASIC_AUTH="user:password", which Flower reads
as its --basic_auth option), never from the command line, where `ps` shows them to every user.
"""

import sys

from celery.bin.celery import main as celery
from flower import urls
from flower.views.monitor import Metrics
from tornado import web


class AuthenticatedMetrics(Metrics):
    """Flower's /metrics, behind the same check (basic auth or OAuth) as Flower's own pages."""

    @web.authenticated
    async def get(self):
        await super().get()


def protect_metrics() -> None:
    """Route /metrics to AuthenticatedMetrics (Flower builds its application from this list)."""
    for index, route in enumerate(urls.handlers):
        if isinstance(route, tuple) and route[1] is Metrics:
            urls.handlers[index] = (route[0], AuthenticatedMetrics)
            return
    # A Flower upgrade that moved the route must not silently leave the metrics open.
    raise RuntimeError("Flower's /metrics route was not found; claw_ai.flower_server needs updating")


def main() -> int:
    protect_metrics()
    sys.argv = ["celery", "-A", "claw_ai", "flower", *sys.argv[1:]]
    return celery()


if __name__ == "__main__":
    sys.exit(main())
