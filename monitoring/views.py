"""GET /metrics (Prometheus: a bearer token; or a signed-in user with the permission) and the admin dashboard."""

import hmac
from datetime import timedelta

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from monitoring import broker
from monitoring.charts import bar_chart, time_chart
from monitoring.dashboard import RANGES, figures
from monitoring.exposition import registry
from monitoring.fold import fold_rollup

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


def dashboard(request):
    """The admin's monitoring page (wrapped in admin_view in claw_ai.urls: signed-in staff only)."""
    if not request.user.has_perm(VIEW_METRICS):
        raise PermissionDenied
    range_ = RANGES.get(request.GET.get("range", ""), RANGES["hour"])
    # What finished since the periodic fold last ran (at most its interval and a minute): the page is current.
    fold_rollup()
    data = figures(range_)
    when = range_.label
    queues, broker_error = {}, ""
    try:
        queues = broker.queue_figures(list(settings.TASK_QUEUES)) if broker.is_redis_broker() else {}
    except Exception as error:  # noqa: BLE001 (whatever the broker raises, the page still shows everything else)
        broker_error = str(error)
    usage_times = sorted({at for at, *_ in data["usage"]})
    models = sorted({model or "?" for _, model, *_ in data["usage"]})
    tokens = {m: [0.0] * len(usage_times) for m in models}
    cost = {m: [0.0] * len(usage_times) for m in models}
    for at, model, total_tokens, total_cost in data["usage"]:
        i = usage_times.index(at)
        tokens[model or "?"][i] = float(total_tokens)
        cost[model or "?"][i] = float(total_cost)
    usage_format = "%a %d" if range_.usage_step >= timedelta(days=1) else "%H:%M"
    step_text = _duration_text(range_.step)
    usage_step_text = _duration_text(range_.usage_step)
    charts = [
        (
            f"Finished tasks by final state — tasks/min, per {step_text}, {when}",
            time_chart(
                data["times"],
                data["finished"],
                unit="tasks/min",
                label="finished tasks",
                stacked=True,
                time_format=range_.time_format,
            ),
        ),
        (
            f"Failure rate — % of finished (success + failure), per {step_text}, {when}",
            time_chart(
                data["times"],
                {"failure rate": data["failure_rate"]},
                unit="%",
                label="failure rate",
                stacked=False,
                time_format=range_.time_format,
            ),
        ),
        (
            f"Runtime by task — seconds, p50 and p95, {when}",
            bar_chart(
                [(name, {"p50": run[0], "p95": run[1]}) for name, _, run, _ in data["by_name"]],
                unit="s",
                label="runtime by task",
            ),
        ),
        (
            f"Queue wait by task — seconds from publish to start, p50 and p95, {when}",
            bar_chart(
                [(name, {"p50": wait[0], "p95": wait[1]}) for name, _, _, wait in data["by_name"]],
                unit="s",
                label="queue wait by task",
            ),
        ),
        (
            "Queue length — messages waiting in the broker, now",
            bar_chart(
                [(queue, {"waiting": figure.length}) for queue, figure in queues.items()],
                unit="msgs",
                label="queue length",
            ),
        ),
        (
            (
                f"Replies' time to first token — seconds from submit to the reply (not streamed), p50 and p95, "
                f"per {step_text}, {when}"
            ),
            time_chart(
                data["times"],
                data["reply_time"],
                unit="s",
                label="reply time",
                stacked=False,
                time_format=range_.time_format,
            ),
        ),
        (
            f"Tokens by model — tokens per {usage_step_text}, {when}",
            time_chart(usage_times, tokens, unit="tokens", label="tokens", stacked=True, time_format=usage_format),
        ),
        (
            f"Cost by model — USD per {usage_step_text}, {when}",
            time_chart(usage_times, cost, unit="USD", label="cost", stacked=True, time_format=usage_format),
        ),
        (
            f"Busiest chat users by cost — USD, tenant / chat user, {when}",
            bar_chart(
                [
                    (f"{data['tenant_names'][tenant]} / {user}", {"cost": float(total)})
                    for tenant, user, total in data["top_users"]
                ],
                unit="USD",
                label="users by cost",
            ),
        ),
    ]
    context = {
        **admin.site.each_context(request),
        "title": "Monitoring",
        "charts": charts,
        "ranges": RANGES.values(),
        "current": range_,
        "since": data["since"],
        "until": data["until"],
        "broker_error": broker_error,
    }
    return TemplateResponse(request, "admin/monitoring/dashboard.html", context)


def _duration_text(step: timedelta) -> str:
    minutes = int(step.total_seconds() // 60)
    if minutes % 1440 == 0:
        return "day" if minutes == 1440 else f"{minutes // 1440} days"
    if minutes % 60 == 0:
        return "hour" if minutes == 60 else f"{minutes // 60} hours"
    return f"{minutes} min"
