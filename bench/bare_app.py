"""The baseline Celery app: what a team would write with Celery, django-celery-results and Flower.

The worker settings mirror the system's (JSON, late acks, prefetch 1, extended results,
STARTED tracked, events for Flower, the same visibility timeout), so the comparison shows
what the system itself adds: task records, the priority transport, the record-aware
result backend and ClawTask.
"""

import functools
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.bare_settings")

QUEUE = "bench_bare"

app = Celery("bench_bare")
app.conf.update(
    broker_url=os.environ["REDIS_URL"],
    broker_transport_options={"visibility_timeout": 7 * 24 * 3600 + 600 + 3600},
    broker_connection_retry_on_startup=True,
    result_backend="django-db",
    result_extended=True,
    result_expires=None,
    task_track_started=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_send_task_events=True,
    task_send_sent_event=True,
    task_default_queue=QUEUE,
    # As the system: keep database connections between tasks (Celery's Django fixup closes them
    # after every task otherwise), so the comparison is not about connection set-up.
    CELERY_DB_REUSE_MAX=1000,
)


@app.task(name="bench.bare.noop")
def noop(n: int) -> dict:
    return {"n": n}


@functools.cache
def provider(provider_url: str):
    """One client per process, shared by the threads (as the system keeps its own): a well-configured
    plain Celery task does not build a client and a new TCP connection for every call."""
    import openai

    return openai.OpenAI(base_url=provider_url, api_key="x", max_retries=0)


@app.task(name="bench.bare.reply")
def reply(provider_url: str) -> dict:
    """An AI reply as a plain Celery task writes one: read the provider's stream to its end, return
    the text. The task has nowhere to send the pieces on to: its user sees the reply when it ends."""
    stream = provider(provider_url).chat.completions.create(
        model="bench-model", messages=[{"role": "user", "content": "Tell me a long story"}], stream=True
    )
    return {"response": "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)}
