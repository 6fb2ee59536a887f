"""Notifications: webhooks and email (queue `notification_default`)."""

from celery import shared_task

from tasks_app.models import TaskRecord
from tasks_app.notifications import (
    EmailDeliveryFailed,
    WebhookDeliveryFailed,
    email_send,
    webhook_deliver,
)
from tasks_app.task_documents import task_status_document
from tasks_app.tasks.base import BaseTaskWithRetry


@shared_task(
    bind=True,
    base=BaseTaskWithRetry,
    name="tasks_app.tasks.notification_tasks.send_webhook",
    # Unreachable receiver, 408/429/5xx: retried with backoff and jitter; a refusal is final.
    autoretry_for=(WebhookDeliveryFailed,),
)
def send_webhook(self, task_id: str, callback_url: str) -> dict:
    """POST the finished task's signed status document to `callback_url` (retried with backoff)."""
    record = TaskRecord.objects.get(task_id=task_id)
    status_code = webhook_deliver(callback_url=callback_url, document=task_status_document(record))
    return {"task_id": task_id, "callback_url": callback_url, "status_code": status_code}


@shared_task(
    bind=True,
    base=BaseTaskWithRetry,
    name="tasks_app.tasks.notification_tasks.send_email",
    autoretry_for=(EmailDeliveryFailed,),
)
def send_email(self, to: list[str], subject: str, body: str) -> dict:
    """Send a plain-text email through Django's email framework (retried when the server is down)."""
    return {"to": to, "sent": email_send(to=to, subject=subject, body=body)}
