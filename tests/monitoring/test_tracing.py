"""Optional OpenTelemetry tracing: one trace from the web request to the worker's provider call.

The spans go over OTLP/HTTP (protobuf) to a loopback receiver started by the test.
"""

import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from rest_framework.test import APIClient

from monitoring import tracing
from tasks_app.models import TaskRecord, TaskState
from tests.support.fake_llm import FakeLLM, answer
from tests.support.processes import ROOT, process_env
from tests.support.waiting import wait_for

AI_QUEUE = "ai_high_priority"
AI_TASK = "tasks_app.tasks.ai_tasks.generate_ai_response"


class TraceReceiver:
    """An OTLP/HTTP trace receiver on loopback: POST /v1/traces, protobuf; keeps every span."""

    def __init__(self) -> None:
        self.spans: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                export = ExportTraceServiceRequest.FromString(body)
                for resource_spans in export.resource_spans:
                    service = next(
                        (a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"),
                        "",
                    )
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            receiver.spans.append(
                                {
                                    "name": span.name,
                                    "service": service,
                                    "trace_id": span.trace_id.hex(),
                                    "span_id": span.span_id.hex(),
                                    "parent": span.parent_span_id.hex(),
                                }
                            )
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def one(self, name: str) -> dict | None:
        return next((span for span in self.spans if span["name"] == name), None)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = TraceReceiver()
    yield server
    server.stop()


@pytest.fixture
def fake_llm():
    server = FakeLLM()
    yield server
    server.stop()


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_reply_is_one_trace_from_the_request_to_the_provider_call(
    receiver, fake_llm, start_worker, without_consumer, alice
):
    # given: a worker exporting to the receiver, the only consumer of the AI queue
    without_consumer(AI_QUEUE)
    start_worker(
        queues=[AI_QUEUE],
        concurrency=1,
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_SERVICE_NAME": "claw-worker",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "LLM_PROVIDER": "openai",
            "LLM_BASE_URL": fake_llm.base_url,
            "LLM_API_KEY": "x",
            "LLM_MODEL": "gpt-4o-mini",
        },
    )
    fake_llm.script(answer("traced"))
    # and this (web) process tracing too
    tracing.configure(endpoint=receiver.url, service_name="claw-web")
    try:
        client = APIClient()
        client.force_authenticate(alice)
        # when: a real request publishes a reply task
        response = client.post(
            "/api/v1/tasks/ai/generate",
            {"conversation_id": "conv_traced", "user_message": "hi", "user_id": "u1"},
            format="json",
        )
        assert response.status_code == 202, response.content
        task_id = response.json()["task_id"]
        wait_for(
            lambda: TaskRecord.objects.filter(task_id=task_id, state=TaskState.SUCCESS).exists(),
            timeout=60,
            what="the reply",
        )
    finally:
        tracing.shutdown()  # exports the web process's spans
    wait_for(lambda: receiver.one(f"run {AI_TASK}") and receiver.one("chat gpt-4o-mini"), what="the worker's spans")

    # then: request -> publish -> task run -> provider call, one trace id
    request = next(span for span in receiver.spans if span["name"].startswith("POST "))
    publish = receiver.one(f"publish {AI_TASK}")
    run = receiver.one(f"run {AI_TASK}")
    call = receiver.one("chat gpt-4o-mini")
    assert (request["service"], publish["service"], run["service"], call["service"]) == (
        "claw-web",
        "claw-web",
        "claw-worker",
        "claw-worker",
    )
    assert request["name"] == "POST /api/v1/tasks/ai/generate"
    assert publish["parent"] == request["span_id"]
    assert run["parent"] == publish["span_id"]
    assert call["parent"] == run["span_id"]
    assert {span["trace_id"] for span in (publish, run, call)} == {request["trace_id"]}


def test_without_the_endpoint_nothing_of_opentelemetry_is_loaded_by_this_system():
    # given: a process as `make run` starts one, without OTEL_EXPORTER_OTLP_ENDPOINT. redis-py 8
    # imports OpenTelemetry's metrics API by itself when the packages are installed (as in this
    # virtualenv, from requirements-tracing.txt): that much is the baseline.
    env = {key: value for key, value in process_env().items() if not key.startswith("OTEL_")}
    program = (
        "import sys, threading, redis\n"
        "def loaded(): return {m for m in sys.modules if m.startswith('opentelemetry')}\n"
        "baseline = loaded()\n"
        "import django; django.setup()\n"
        "from django.test import Client\n"
        "Client().get('/api/v1/no-such-thing')\n"
        "import claw_ai.celery\n"
        "from monitoring import tracing\n"
        "exporting = [t.name for t in threading.enumerate() if 'Span' in t.name]\n"
        "print(sorted(loaded() - baseline), tracing.enabled(), exporting)\n"
    )
    # when
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    # then: no tracer, no exporter, no propagator, no export thread
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] False []"
