"""Redis restarts empty with accepted tasks queued: the stuck-task job re-sends them, once.

The test breaks only a private Redis it starts itself, never the machine's shared one.
"""

from collections import Counter
from datetime import timedelta

import pytest
import redis
from django.conf import settings

from devtools.private_servers import PrivateRedis
from tasks_app.maintenance import resend_lost_tasks
from tasks_app.models import TaskRecord, TaskState
from tests.support.broker import broker_at
from tests.support.tasks import record_run
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

ACCEPTED = 50


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def restart_empty(server: PrivateRedis) -> None:
    """Stop the server and start a new one on the same port: everything it held is gone."""
    server.stop()
    server.start()


def test_tasks_lost_with_the_broker_all_run_once_after_the_stuck_task_job(private_redis, start_worker):
    db = settings.REDIS_TEST_DB
    url = f"redis://127.0.0.1:{private_redis.port}/{db}"
    runs_key = "broker-loss-runs"

    # given 50 accepted tasks queued on a broker no worker consumes yet
    with broker_at(url):
        sent = [record_run.apply_async(args=[f"task-{n}", runs_key]) for n in range(ACCEPTED)]
    ids = [result.id for result in sent]
    assert TaskRecord.objects.filter(task_id__in=ids, state=TaskState.PENDING).count() == ACCEPTED

    # when Redis restarts empty, a worker comes up, and the stuck-task job runs
    restart_empty(private_redis)
    assert redis.Redis.from_url(url).dbsize() == 0
    with broker_at(url):
        start_worker(env={"REDIS_URL": f"redis://127.0.0.1:{private_redis.port}/0"})
        report = resend_lost_tasks(pending_for=timedelta(0))

        # then every lost task is re-sent, runs, and succeeds
        assert sorted(report.resent_task_ids) == sorted(ids)
        wait_for(
            lambda: TaskRecord.objects.filter(task_id__in=ids, state=TaskState.SUCCESS).count() == ACCEPTED,
            timeout=60,
            what="all 50 re-sent tasks to succeed",
        )
        # and a second run of the job re-sends nothing
        assert resend_lost_tasks(pending_for=timedelta(0)).resent_task_ids == []

    # and none ran twice; each record says it was re-sent once
    runs = Counter(label.decode() for label in redis.Redis.from_url(url).lrange(runs_key, 0, -1))
    assert runs == Counter({f"task-{n}": 1 for n in range(ACCEPTED)})
    assert set(TaskRecord.objects.filter(task_id__in=ids).values_list("resent_count", flat=True)) == {1}
