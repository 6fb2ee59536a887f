"""GET /metrics, for Prometheus (a bearer token) and for signed-in users with the permission."""

import hmac

from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from monitoring.exposition import registry

VIEW_METRICS = "monitoring.view_metrics"


def _bearer_token(request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def authorized(request) -> bool | None:
    """True: may read; False: signed in without the permission (403); None: not authenticated (401)."""
    token = _bearer_token(request)
    if token is not None:
        expected = settings.METRICS_TOKEN
        return True if expected and hmac.compare_digest(token.encode(), expected.encode()) else None
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return user.has_perm(VIEW_METRICS)


@require_GET
def metrics(request):
    allowed = authorized(request)
    if allowed is None:
        response = HttpResponse("authentication required\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if not allowed:
        return HttpResponse("permission monitoring.view_metrics required\n", status=403, content_type="text/plain")
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
