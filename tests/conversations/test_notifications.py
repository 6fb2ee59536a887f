"""Callbacks when an AI task finishes (signed, retried, never redirected) and email notifications."""

import json

import pytest
from rest_framework.test import APIClient

from tasks_app.models import TaskRecord, TaskState
from tasks_app.notifications import WebhookRejected, signature_is_valid, webhook_deliver
from tasks_app.tasks.ai_tasks import generate_ai_response
from tasks_app.tasks.notification_tasks import send_email, send_webhook
from tests.support.waiting import wait_for
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def delivered(receiver: WebhookReceiver, count: int = 1):
    deliveries = wait_for(
        lambda: receiver.deliveries[:count] if len(receiver.deliveries) >= count else None, what="callback"
    )
    # Let the webhook tasks finish writing their results before the test database is flushed.
    wait_for(
        lambda: not TaskRecord.objects.filter(task_name=send_webhook.name).exclude(state=TaskState.SUCCESS).exists(),
        what="the webhook tasks to finish",
    )
    return deliveries


def test_a_finished_ai_task_posts_its_signed_status_to_the_callback(celery_worker, webhook_receiver, staff_user):
    # given an AI task sent with a callback URL
    sent = generate_ai_response.apply_async(
        kwargs={
            "conversation_id": "conv_callback",
            "user_message": "ping",
            "user_id": "user_456",
            "callback_url": webhook_receiver.url("/claw/done"),
        }
    )

    # when it finished, the receiver got one POST
    (delivery,) = delivered(webhook_receiver)

    # then the body is the task's status document, signed with the shared secret
    assert delivery.path == "/claw/done"
    assert signature_is_valid(delivery.body, delivery.headers["X-Claw-Signature"])
    assert not signature_is_valid(delivery.body, delivery.headers["X-Claw-Signature"], secret="wrong secret")
    assert delivery.headers["Idempotency-Key"] == sent.id
    document = json.loads(delivery.body)
    assert document["task_id"] == sent.id
    assert document["status"] == "SUCCESS"
    assert document["result"]["conversation_id"] == "conv_callback"
    assert "ping" in document["result"]["response"]
    assert document["date_done"]
    # and it is the document GET /api/v1/tasks/status/{id} answers
    staff = APIClient()
    staff.force_authenticate(staff_user)
    assert staff.get(f"/api/v1/tasks/status/{sent.id}").json() == document


def test_a_failed_ai_task_posts_its_failure(celery_worker, webhook_receiver):
    # given a conversation of user_1
    generate_ai_response.apply_async(
        kwargs={"conversation_id": "conv_cb_fail", "user_message": "hi", "user_id": "user_1"}
    ).get(timeout=30)

    # when a task for another user names it, with a callback
    sent = generate_ai_response.apply_async(
        kwargs={
            "conversation_id": "conv_cb_fail",
            "user_message": "hi",
            "user_id": "user_2",
            "callback_url": webhook_receiver.url(),
        }
    )

    # then the callback reports the failure and its reason
    (delivery,) = delivered(webhook_receiver)
    document = json.loads(delivery.body)
    assert (document["task_id"], document["status"]) == (sent.id, "FAILURE")
    assert "belongs to another user" in document["error"]
    assert signature_is_valid(delivery.body, delivery.headers["X-Claw-Signature"])


def test_a_failed_delivery_is_retried_with_the_same_idempotency_key(celery_worker, webhook_receiver):
    # given a finished task and a receiver that first answers 503
    finished = generate_ai_response.apply_async(
        kwargs={"conversation_id": "conv_cb_retry", "user_message": "hi", "user_id": "u"}
    )
    finished.get(timeout=30)
    webhook_receiver.statuses = [503]

    # when its callback is sent
    notification = send_webhook.apply_async(kwargs={"task_id": finished.id, "callback_url": webhook_receiver.url()})

    # then it was delivered twice, the second time successfully, with identical key and body
    first, second = delivered(webhook_receiver, 2)
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == finished.id
    assert first.body == second.body
    record = wait_for(
        lambda: TaskRecord.objects.filter(task_id=notification.id, state=TaskState.SUCCESS).first(),
        what="the notification task to succeed",
    )
    assert record.retries == 1


def test_redirects_are_not_followed(webhook_receiver):
    # given a receiver that redirects every callback to another server
    elsewhere = WebhookReceiver()
    webhook_receiver.redirect_to = elsewhere.url()
    try:
        # when a callback is delivered
        with pytest.raises(WebhookRejected, match="redirect"):
            webhook_deliver(callback_url=webhook_receiver.url(), document={"task_id": "t1", "status": "SUCCESS"})

        # then the other server never heard of it
        assert len(webhook_receiver.deliveries) == 1
        assert elsewhere.deliveries == []
    finally:
        elsewhere.stop()


def test_only_http_callbacks_are_delivered():
    with pytest.raises(WebhookRejected, match="http or https"):
        webhook_deliver(callback_url="file:///etc/passwd", document={"task_id": "t1"})


def test_email_notifications_go_through_djangos_email_backend(celery_worker):
    # when an email notification is sent by a worker (console backend by default)
    sent = send_email.apply_async(
        kwargs={"to": ["ops@example.com"], "subject": "Task report 42", "body": "All tasks finished."}
    )

    # then it was handed to the backend, which printed it in the worker's log
    assert sent.get(timeout=30) == {"to": ["ops@example.com"], "sent": 1}
    wait_for(lambda: "Subject: Task report 42" in celery_worker.log_text(), what="the email in the worker log")
