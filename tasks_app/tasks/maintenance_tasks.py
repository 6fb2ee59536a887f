"""Housekeeping tasks (queue `default`)."""

import socket

from celery import shared_task
from django.utils import timezone


@shared_task(bind=True, name="tasks_app.tasks.maintenance_tasks.health_check")
def health_check(self) -> dict:
    """Prove a queue is served end to end: broker, worker, result backend."""
    return {
        "worker": self.request.hostname or socket.gethostname(),
        "queue": (self.request.delivery_info or {}).get("routing_key"),
        "at": timezone.now().isoformat(),
    }
