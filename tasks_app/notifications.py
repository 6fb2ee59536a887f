"""Notifications about tasks: signed webhook callbacks and email.

A callback POSTs the task's status document (the shape of GET /api/v1/tasks/status/{id}) as JSON:
- `X-Claw-Signature: sha256=<hex>` — HMAC-SHA256 of the exact body bytes under
  WEBHOOK_SIGNING_SECRET; receivers recompute it and compare in constant time.
- `Idempotency-Key: <task id>` — the same for every attempt, so a receiver that got a delivery
  whose answer was lost can ignore the retry.
Redirects are never followed: a callback goes to the host the client named, or nowhere; and that
host must be a public address or in WEBHOOK_ALLOWED_NETWORKS (tasks_app.callback_addresses).
Callbacks connect directly, not through a proxy named in the environment.
"""

import hashlib
import hmac
import http.client
import json
import smtplib
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import send_mail
from django.core.serializers.json import DjangoJSONEncoder

from tasks_app.callback_addresses import CallbackAddressRefused, connect_to_allowed_address

SIGNATURE_HEADER = "X-Claw-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"


class WebhookRejected(Exception):
    """The receiver refused the delivery, or the URL is unusable: retrying would not help."""


class WebhookDeliveryFailed(Exception):
    """The receiver could not be reached or answered 408/429/5xx: try again later."""


class EmailDeliveryFailed(Exception):
    """The mail server could not take the message now."""


def sign(body: bytes, *, secret: str | None = None) -> str:
    secret = settings.WEBHOOK_SIGNING_SECRET if secret is None else secret
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_is_valid(body: bytes, signature: str, *, secret: str | None = None) -> bool:
    return hmac.compare_digest(sign(body, secret=secret), signature or "")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # the 3xx surfaces as an HTTPError instead of being followed


class _CheckedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = connect_to_allowed_address


class _CheckedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = connect_to_allowed_address


class _CheckedHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(_CheckedHTTPConnection, req)


class _CheckedHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        # HTTPSHandler keeps its TLS context in _context (not in typeshed).
        return self.do_open(_CheckedHTTPSConnection, req, context=self._context)  # type: ignore[attr-defined]


_opener = urllib.request.build_opener(
    urllib.request.ProxyHandler({}), _CheckedHTTPHandler, _CheckedHTTPSHandler, _NoRedirects
)


def webhook_deliver(*, callback_url: str, document: dict) -> int:
    """POST the signed document; returns the receiver's status code.

    Raises WebhookDeliveryFailed (retry) or WebhookRejected (give up).
    """
    if urlsplit(callback_url).scheme not in ("http", "https"):
        raise WebhookRejected(f"callback URL must be http or https: {callback_url!r}")
    body = json.dumps(document, cls=DjangoJSONEncoder, ensure_ascii=False, separators=(",", ":")).encode()
    request = urllib.request.Request(  # noqa: S310 (the scheme is checked above: http or https only)
        callback_url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "CLAW.AI-webhooks/1",
            SIGNATURE_HEADER: sign(body),
            IDEMPOTENCY_HEADER: str(document.get("task_id", "")),
        },
    )
    try:
        with _opener.open(request, timeout=settings.WEBHOOK_TIMEOUT) as response:
            return response.status
    except urllib.error.HTTPError as error:
        if 300 <= error.code < 400:
            raise WebhookRejected(
                f"callback answered {error.code} (redirect to {error.headers.get('Location')!r} not followed)"
            ) from None
        if error.code in (408, 429) or error.code >= 500:
            raise WebhookDeliveryFailed(f"callback answered {error.code}") from None
        raise WebhookRejected(f"callback answered {error.code}") from None
    except CallbackAddressRefused as error:
        raise WebhookRejected(str(error)) from None
    except (TimeoutError, urllib.error.URLError, ConnectionError) as error:
        raise WebhookDeliveryFailed(f"callback unreachable: {error}") from None


def email_send(*, to: list[str], subject: str, body: str) -> int:
    """Send a plain-text email through Django's email framework (EMAIL_BACKEND)."""
    try:
        return send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, to, fail_silently=False)
    except (TimeoutError, smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, ConnectionError) as error:
        raise EmailDeliveryFailed(f"mail server unavailable: {error}") from error
