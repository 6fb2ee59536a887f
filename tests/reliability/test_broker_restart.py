"""Redis restarts with its data: the worker consumes again within 30 s, and a queued task survives.

Celery has open reports of workers that stay connected and idle after a reconnect; kombu's BRPOP
health check (`health_check_interval`) and the workers' watchdog (tasks_app.liveness) are what
bound it here. The test breaks only a private Redis it starts itself.
"""

import time

import pytest
import redis
from django.conf import settings

from devtools.private_servers import PrivateRedis
from tasks_app.models import TaskRecord, TaskState
from tests.support.broker import broker_at
from tests.support.tasks import record_run
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture
def persistent_redis(tmp_path):
    server = PrivateRedis(tmp_path, persistent=True)
    server.start()
    yield server
    server.stop()


def succeeded(task_id: str) -> bool:
    return TaskRecord.objects.filter(task_id=task_id, state=TaskState.SUCCESS).exists()


def test_after_a_redis_restart_the_worker_consumes_again_within_30_s(persistent_redis, start_worker, capsys):
    url = f"redis://127.0.0.1:{persistent_redis.port}/{settings.REDIS_TEST_DB}"
    runs = "restart-runs"
    with broker_at(url):
        # given a worker consuming from Redis
        worker = start_worker(concurrency=2, env={"REDIS_URL": f"redis://127.0.0.1:{persistent_redis.port}/0"})
        before = record_run.apply_async(args=["before", runs]).id
        wait_for(lambda: succeeded(before), timeout=30, what="a task before the restart")

        # when Redis restarts with its data, while a delayed task waits in it
        delayed = record_run.apply_async(args=["delayed", runs], countdown=3).id
        persistent_redis.stop()
        persistent_redis.start()
        restarted_at = time.monotonic()

        # then a task sent after the restart runs within 30 s, and so does the delayed one
        after = record_run.apply_async(args=["after", runs]).id
        wait_for(lambda: succeeded(after), timeout=30, interval=0.2, what="the worker to consume after the restart")
        consuming_again = time.monotonic() - restarted_at
        wait_for(lambda: succeeded(delayed), timeout=60, what="the delayed task, kept by Redis")
        with capsys.disabled():
            print(f"\nbroker restart (Redis): the worker consumed again {consuming_again:.1f}s after the restart")
        # each ran once
        labels = sorted(label.decode() for label in redis.Redis.from_url(url).lrange(runs, 0, -1))
        assert labels == ["after", "before", "delayed"]
        assert worker.process.poll() is None
