"""Optional OpenTelemetry tracing: with OTEL_EXPORTER_OTLP_ENDPOINT set, one trace per reply.

Spans: the web request (SERVER), each task publish (PRODUCER), the task run (CONSUMER) and the
LLM provider call (CLIENT), exported over OTLP/HTTP. The publish puts the W3C `traceparent`
into the message headers, and the worker continues the trace from it, so a request, the tasks
it published and their provider calls share one trace id (also across retries, which re-send
the same headers).

Without the variable nothing here runs and nothing of OpenTelemetry is imported:
MonitoringConfig.ready() calls configure() only when it is set, the middleware removes itself
(MiddlewareNotUsed), and the signal receivers are connected by configure() alone.

Why by hand rather than opentelemetry-instrumentation-django/-celery: the spans needed are
four, the instrumentation packages pull in their own pinned betas (whose django and celery
releases were not of one version), and the provider call is one signal away
(conversations.signals.provider_call_finished, sent with its duration: the span is drawn
after the fact with its real start and end).
"""

from __future__ import annotations

import os
import threading
import time

from celery import signals
from django.core.exceptions import ImproperlyConfigured, MiddlewareNotUsed

from conversations.signals import provider_call_finished

_state = threading.local()  # the publish span between before_ and after_task_publish, per thread
_tracer = None  # an opentelemetry Tracer once configure() ran
_provider = None


def enabled() -> bool:
    return _tracer is not None


def configure(*, endpoint: str | None = None, service_name: str | None = None) -> None:
    """Start exporting spans to `endpoint` (default: OTEL_EXPORTER_OTLP_ENDPOINT), and trace."""
    global _tracer, _provider  # noqa: PLW0603 (one tracer per process, set at start)
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as error:
        raise ImproperlyConfigured(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry packages are not installed: "
            "pip install -r requirements-tracing.txt (or unset the variable)"
        ) from error

    base = endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    # The SDK reads OTEL_EXPORTER_OTLP_TRACES_ENDPOINT itself when it is set.
    traces = None if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") else f"{base.rstrip('/')}/v1/traces"
    name = service_name or os.environ.get("OTEL_SERVICE_NAME") or "claw-ai"
    _provider = TracerProvider(resource=Resource.create({"service.name": name}))
    _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces)))
    _tracer = _provider.get_tracer("claw_ai.monitoring")
    signals.before_task_publish.connect(_publish_started, dispatch_uid="monitoring.tracing.publish_started")
    signals.after_task_publish.connect(_publish_finished, dispatch_uid="monitoring.tracing.publish_finished")
    signals.task_prerun.connect(_run_started, dispatch_uid="monitoring.tracing.run_started")
    signals.task_postrun.connect(_run_finished, dispatch_uid="monitoring.tracing.run_finished")
    signals.worker_process_shutdown.connect(_flush, dispatch_uid="monitoring.tracing.flush_process")
    signals.worker_shutdown.connect(_flush, dispatch_uid="monitoring.tracing.flush_worker")
    provider_call_finished.connect(_provider_call, dispatch_uid="monitoring.tracing.provider_call")


def shutdown() -> None:
    """Export what is left and stop tracing (tests; a process's exit does the same on its own)."""
    global _tracer, _provider  # noqa: PLW0603 (one tracer per process)
    for signal, uid in (
        (signals.before_task_publish, "publish_started"),
        (signals.after_task_publish, "publish_finished"),
        (signals.task_prerun, "run_started"),
        (signals.task_postrun, "run_finished"),
        (signals.worker_process_shutdown, "flush_process"),
        (signals.worker_shutdown, "flush_worker"),
        (provider_call_finished, "provider_call"),
    ):
        signal.disconnect(dispatch_uid=f"monitoring.tracing.{uid}")
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None


def _flush(**_kwargs) -> None:
    if _provider is not None:
        _provider.force_flush()


class TracingMiddleware:
    """A SERVER span around each request, continuing the caller's traceparent if it sent one."""

    def __init__(self, get_response):
        if not enabled():
            raise MiddlewareNotUsed
        self.get_response = get_response

    def __call__(self, request):
        from opentelemetry import trace
        from opentelemetry.propagate import extract

        tracer = _tracer
        if tracer is None:  # shutdown() ran meanwhile
            return self.get_response(request)
        parent = extract({key.lower(): value for key, value in request.headers.items()})
        with tracer.start_as_current_span(
            f"{request.method} {request.path}", context=parent, kind=trace.SpanKind.SERVER
        ) as span:
            span.set_attribute("http.request.method", request.method)
            span.set_attribute("url.path", request.path)
            request_id = getattr(request, "request_id", None)
            if request_id:
                span.set_attribute("claw.request_id", request_id)
            response = self.get_response(request)
            span.set_attribute("http.response.status_code", response.status_code)
            match = getattr(request, "resolver_match", None)
            if match is not None and match.route:
                # The URL pattern, not the path: span names stay few (DRF's router writes regexes).
                route = match.route.replace("/?", "").replace("^", "").replace("$", "")
                span.update_name(f"{request.method} /{route}")
                span.set_attribute("http.route", route)
            if response.status_code >= 500:
                span.set_status(trace.StatusCode.ERROR)
            return response


def _publish_started(sender=None, headers=None, routing_key=None, **_kwargs) -> None:
    from opentelemetry import trace
    from opentelemetry.propagate import inject

    tracer = _tracer
    if headers is None or tracer is None:  # tracer None: shutdown() ran meanwhile
        return
    span = tracer.start_span(f"publish {sender}", kind=trace.SpanKind.PRODUCER)
    span.set_attribute("messaging.system", "celery")
    span.set_attribute("messaging.destination.name", routing_key or "")
    span.set_attribute("messaging.message.id", headers.get("id", ""))
    # The message carries the publish span as its parent: the run continues this trace.
    inject(headers, context=trace.set_span_in_context(span))
    _state.publishing = [*getattr(_state, "publishing", []), span]


def _publish_finished(**_kwargs) -> None:
    publishing = getattr(_state, "publishing", [])
    if publishing:
        publishing.pop().end()


def _run_started(task_id=None, task=None, **_kwargs) -> None:
    from opentelemetry import context, trace
    from opentelemetry.propagate import extract

    tracer = _tracer
    if tracer is None:  # shutdown() ran meanwhile
        return
    request = task.request
    carrier = {field: getattr(request, field, None) for field in ("traceparent", "tracestate")}
    parent = extract({key: value for key, value in carrier.items() if value})
    span = tracer.start_span(f"run {task.name}", context=parent, kind=trace.SpanKind.CONSUMER)
    span.set_attribute("messaging.system", "celery")
    span.set_attribute("messaging.message.id", task_id or "")
    span.set_attribute("messaging.destination.name", (request.delivery_info or {}).get("routing_key") or "")
    span.set_attribute("celery.retries", request.retries or 0)
    token = context.attach(trace.set_span_in_context(span))
    request.claw_trace = (span, token)


def _run_finished(task=None, state=None, **_kwargs) -> None:
    from opentelemetry import context, trace

    span, token = getattr(task.request, "claw_trace", (None, None))
    if span is None or token is None:  # set together by _run_started
        return
    span.set_attribute("celery.state", state or "")
    if state == "FAILURE":
        span.set_status(trace.StatusCode.ERROR)
    span.end()
    context.detach(token)
    task.request.claw_trace = None


def _provider_call(*, model: str, seconds: float, error: BaseException | None, **_kwargs) -> None:
    from opentelemetry import trace

    tracer = _tracer
    if tracer is None:  # shutdown() ran meanwhile
        return
    # Sent by the task's thread right after the call: the span is drawn with its real times.
    ended = time.time_ns()
    span = tracer.start_span(
        f"chat {model}", kind=trace.SpanKind.CLIENT, start_time=ended - int(seconds * 1_000_000_000)
    )
    span.set_attribute("gen_ai.operation.name", "chat")
    span.set_attribute("gen_ai.request.model", model)
    if error is not None:
        span.set_attribute("error.type", type(error).__name__)
        span.set_status(trace.StatusCode.ERROR)
    span.end(end_time=ended)
