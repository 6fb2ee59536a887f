"""Two beat processes by accident: each due job is still sent once; the survivor takes over a dead holder.

Sends are counted from the task records beat writes as it publishes (no worker needed): the job's
queue is the test's own, so nothing consumes them.
"""

import json
import os
import signal
import time
import uuid
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tasks_app.beat import LEASE_KEY
from tasks_app.models import TaskRecord
from tasks_app.schedules import LIFELINE_JOB_NAME
from tests.support.beat import Beat
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.worker]

WINDOW = 20  # seconds of sending counted
LEASE_SECONDS = 3


@pytest.fixture
def beats():
    started: list[Beat] = []

    def start() -> Beat:
        beat = Beat(env={"BEAT_LEASE_SECONDS": str(LEASE_SECONDS)})
        started.append(beat)
        return beat

    yield start
    for beat in started:
        beat.stop()
    redis.Redis.from_url(settings.REDIS_URL).delete(LEASE_KEY)


def test_two_beats_send_each_job_once_and_the_survivor_takes_over(beats, redis_client, capsys):
    # given a job due every second, on a queue nobody consumes, and the lifeline disabled
    queue = f"beat-{uuid.uuid4().hex[:6]}"
    every_second = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS)
    job = PeriodicTask.objects.create(
        name=f"tick {queue}", task="tests.record_run", interval=every_second, queue=queue, args=json.dumps(["t", queue])
    )
    PeriodicTask.objects.filter(name=LIFELINE_JOB_NAME).update(enabled=False)
    sends = TaskRecord.objects.filter(periodic_task_name=job.name)

    # when two beats run at once
    first, second = beats(), beats()
    start = wait_for(lambda: sends.order_by("created_at").first(), timeout=30, what="the first send").created_at
    wait_for(
        lambda: sends.filter(created_at__gte=start + timedelta(seconds=WINDOW)).exists(),
        timeout=WINDOW + 15,
        what=f"{WINDOW} s of sending",
    )

    # then the job was sent once a second, not twice
    sent = sends.filter(created_at__lt=start + timedelta(seconds=WINDOW)).count()
    assert 18 <= sent <= 22, f"{sent} sends in {WINDOW} s"
    # and both beats warned at start that the lifeline is disabled
    for beat in (first, second):
        assert f"the periodic job {LIFELINE_JOB_NAME!r} is disabled or deleted" in beat.log_text()

    # when the beat holding the lease is SIGKILLed
    holder_pid = int(redis_client.get(LEASE_KEY).decode().split(":")[1])
    holder, survivor = (first, second) if first.process.pid == holder_pid else (second, first)
    assert holder.process.pid == holder_pid
    os.killpg(holder.process.pid, signal.SIGKILL)
    holder.process.wait(10)
    killed_at = time.monotonic()
    count_at_kill = sends.count()

    # then the survivor takes over within the lease and sends at the same pace
    wait_for(lambda: sends.count() >= count_at_kill + 3, timeout=LEASE_SECONDS + 15, what="the survivor to send")
    taken_over_after = time.monotonic() - killed_at
    assert "holds the lease" in survivor.log_text()
    with capsys.disabled():
        print(
            f"\nbeat lease: two beats sent the 1 s job {sent} times in {WINDOW} s; the survivor "
            f"sent again {taken_over_after:.1f}s after the holder was killed (lease {LEASE_SECONDS} s)"
        )
    assert taken_over_after < LEASE_SECONDS + 10
