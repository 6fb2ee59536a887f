"""Task counters and histograms on real workers: they move by exactly what the tasks did."""

import contextlib
import uuid

import pytest
from celery import states

from claw_ai.celery import celery_app
from tasks_app.models import TaskRecord, TaskState
from tasks_app.services import cancel_task
from tests.monitoring.conftest import delta, scrape
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

QUEUE = "default"  # where the tests.* tasks are routed


def record_state(task_id: str) -> str | None:
    return TaskRecord.objects.filter(task_id=task_id).values_list("state", flat=True).first()


def scheduled_ids() -> set[str]:
    replies = celery_app.control.inspect(timeout=0.5).scheduled() or {}
    return {entry["request"]["id"] for entries in replies.values() for entry in entries}


def counters(name: str, **moves: float) -> dict:
    return {(f"celery_task_{event}_total", (("name", name), ("queue", QUEUE))): moved for event, moved in moves.items()}


def histogram_counts(changed: dict, metric: str, **labels) -> float:
    return changed.get((f"{metric}_count", tuple(sorted(labels.items()))), 0)


def test_a_known_mix_of_tasks_moves_the_counters_by_exactly_that(celery_worker, metrics_token):
    # given
    before = scrape(metrics_token)
    # when: three successes, a failure, a task that retries once then succeeds, a revoked one
    successes = [celery_app.send_task("tests.record_run", args=[f"ok{i}", f"metrics:{uuid.uuid4()}"]) for i in range(3)]
    failure = celery_app.send_task("tests.fail", args=["on purpose"])
    retried = celery_app.send_task("tests.retry_once", args=[f"metrics:retry:{uuid.uuid4()}"])
    revoked = celery_app.send_task("tests.wait_for_key", args=["never-set"], countdown=600)
    wait_for(lambda: revoked.id in scheduled_ids(), what="the worker to hold the delayed task")
    cancel_task(record=TaskRecord.objects.get(task_id=revoked.id))
    finished = [*successes, failure, retried]
    wait_for(
        lambda: all(record_state(r.id) in states.READY_STATES for r in finished),
        timeout=60,
        what="the tasks to finish",
    )
    expected = {
        **counters("tests.record_run", sent=3, received=3, started=3, succeeded=3),
        **counters("tests.fail", sent=1, received=1, started=1, failed=1),
        # Celery's retry re-sends the same task: received and started twice, sent once.
        **counters("tests.retry_once", sent=1, received=2, started=2, retried=1, succeeded=1),
        # The worker held the delayed message; cancelled before its eta, it never started.
        **counters("tests.wait_for_key", sent=1, received=1, revoked=1),
    }

    # then: counts (received ones are written by the worker about a second later)
    # (Only these tasks' series: a worker of an earlier test in this process may still report a
    # message it received, about a second late.)
    names = {"tests.record_run", "tests.fail", "tests.retry_once", "tests.wait_for_key"}

    def task_counters():
        changed = delta(before, scrape(metrics_token))
        return {
            key: n
            for key, n in changed.items()
            if key[0].startswith("celery_task_") and "_total" in key[0] and dict(key[1]).get("name") in names
        }

    seen: list[dict] = []
    with contextlib.suppress(AssertionError):  # the comparison below shows the difference
        wait_for(lambda: seen.append(task_counters()) or seen[-1] == expected, timeout=20, what="the counters")
    assert seen[-1] == expected
    assert record_state(failure.id) == TaskState.FAILURE
    assert record_state(retried.id) == TaskState.SUCCESS
    # and histograms: one runtime per task that succeeded or failed, one queue wait per first start
    changed = delta(before, scrape(metrics_token))
    assert histogram_counts(changed, "celery_task_runtime", name="tests.record_run", queue=QUEUE) == 3
    assert histogram_counts(changed, "celery_task_runtime", name="tests.fail", queue=QUEUE) == 1
    assert histogram_counts(changed, "celery_task_runtime", name="tests.retry_once", queue=QUEUE) == 1
    assert histogram_counts(changed, "celery_task_runtime", name="tests.wait_for_key", queue=QUEUE) == 0
    assert histogram_counts(changed, "claw_task_queue_wait_seconds", queue=QUEUE) == 5
    runtimes = [r.runtime for r in TaskRecord.objects.filter(task_id__in=[r.id for r in finished])]
    runtime_sum = sum(value for key, value in changed.items() if key[0] == "celery_task_runtime_sum")
    assert runtime_sum == pytest.approx(sum(runtimes), abs=0.01)


def test_cleaning_up_records_leaves_the_counters_alone(celery_worker, metrics_token):
    # given a task that ran, and whose "received" the worker has written (batched, a second later)
    sent_before = scrape(metrics_token)
    result = celery_app.send_task("tests.record_run", args=["kept", f"metrics:{uuid.uuid4()}"])
    wait_for(lambda: record_state(result.id) == TaskState.SUCCESS, what="the task to succeed")
    received = counters("tests.record_run", received=1)
    wait_for(
        lambda: all(delta(sent_before, scrape(metrics_token)).get(key) == n for key, n in received.items()),
        timeout=20,
        what="the worker to write the task's received count",
    )
    before = scrape(metrics_token)
    # when: the cleanup job deletes finished records
    TaskRecord.objects.filter(state__in=[TaskState.SUCCESS]).delete()
    # then: counters are monotonic
    assert delta(before, scrape(metrics_token)) == {}
