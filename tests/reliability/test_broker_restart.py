"""The broker restarts with its data: the worker consumes again within 30 s, and a delayed task survives.

Celery has open reports of workers that stay connected and idle after a reconnect; on Redis,
kombu's BRPOP health check (`health_check_interval`) and the workers' watchdog and reconnect
hand-back (tasks_app.liveness) are what bound it here. On Redis and on RabbitMQ; the test breaks
only a private server it starts itself.
"""

import time
import uuid

import pytest
import redis
from django.conf import settings

from devtools.private_servers import PrivateRabbitMQ, PrivateRedis
from tasks_app.models import TaskRecord, TaskState
from tests.support.broker import broker_at
from tests.support.tasks import record_run
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


class RestartableBroker:
    def __init__(self, kind: str, tmp_path) -> None:
        self.kind = kind
        if kind == "redis":
            self.server = PrivateRedis(tmp_path, persistent=True)
            self.server.start()
            self.url = f"redis://127.0.0.1:{self.server.port}/{settings.REDIS_TEST_DB}"
            self.worker_env = {"REDIS_URL": f"redis://127.0.0.1:{self.server.port}/0"}
            self.runs_url = self.url  # the workers' Redis, where test tasks note their runs
        else:
            if PrivateRabbitMQ.binary() is None:
                pytest.skip("rabbitmq-server is not installed: the RabbitMQ restart is not tried")
            self.server = PrivateRabbitMQ()
            self.url = self.server.start()
            self.worker_env = {"CELERY_BROKER_URL": self.url}
            self.runs_url = settings.REDIS_URL

    def restart(self) -> None:
        self.server.stop()
        self.server.start()

    def remove(self) -> None:
        self.server.stop()
        if self.kind == "rabbitmq":
            self.server.remove()


@pytest.fixture(params=["redis", "rabbitmq"])
def restartable_broker(request, tmp_path):
    broker = RestartableBroker(request.param, tmp_path)
    yield broker
    broker.remove()


def succeeded(task_id: str) -> bool:
    return TaskRecord.objects.filter(task_id=task_id, state=TaskState.SUCCESS).exists()


def test_after_a_broker_restart_the_worker_consumes_again_within_30_s(restartable_broker, start_worker, capsys):
    broker = restartable_broker
    runs = f"restart-runs-{uuid.uuid4().hex[:6]}"
    with broker_at(broker.url):
        # given a worker consuming from the broker
        worker = start_worker(concurrency=2, env=broker.worker_env)
        before = record_run.apply_async(args=["before", runs]).id
        wait_for(lambda: succeeded(before), timeout=30, what="a task before the restart")

        # when Redis restarts with its data, while a delayed task waits in it
        delayed = record_run.apply_async(args=["delayed", runs], countdown=3).id
        broker.restart()
        restarted_at = time.monotonic()

        # then a task sent after the restart runs within 30 s, and so does the delayed one
        after = record_run.apply_async(args=["after", runs]).id
        wait_for(lambda: succeeded(after), timeout=30, interval=0.2, what="the worker to consume after the restart")
        consuming_again = time.monotonic() - restarted_at
        wait_for(lambda: succeeded(delayed), timeout=60, what="the delayed task, kept by the broker")
        with capsys.disabled():
            print(f"\nbroker restart ({broker.kind}): the worker consumed again {consuming_again:.1f}s after it")
        # each ran once
        labels = sorted(label.decode() for label in redis.Redis.from_url(broker.runs_url).lrange(runs, 0, -1))
        assert labels == ["after", "before", "delayed"]
        assert worker.process.poll() is None
