"""Tasks that exist only in test workers (loaded with `celery worker -I tests.support.tasks`)."""

import time

import redis
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from tasks_app.tasks.base import BaseTaskWithRetry


def test_redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


@shared_task(name="tests.record_run")
def record_run(label: str, list_key: str) -> str:
    """Append `label` to a Redis list, so a test can read the order tasks ran in."""
    test_redis().rpush(list_key, label)
    return label


@shared_task(name="tests.wait_for_key")
def wait_for_key(key: str, timeout: float = 30) -> bool:
    """Run until a test sets `key` (or the timeout passes): a task that stays STARTED on demand."""
    client = test_redis()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.exists(key):
            return True
        time.sleep(0.05)
    return False


@shared_task(name="tests.record_then_wait")
def record_then_wait(label: str, list_key: str, release_key: str, timeout: float = 120) -> str:
    """Note the run in a Redis list, then wait for `release_key`: a long task whose runs can be counted."""
    client = test_redis()
    client.rpush(list_key, label)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not client.exists(release_key):
        time.sleep(0.05)
    return label


@shared_task(name="tests.ignore_soft_limit")
def ignore_soft_limit(key: str, timeout: float = 60) -> bool:
    """Stuck for good: swallows the soft time limit, so only the hard one can end it."""
    client = test_redis()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.exists(key):
                return True
            time.sleep(0.05)
        except SoftTimeLimitExceeded:
            continue
    return False


@shared_task(name="tests.fail")
def fail(message: str) -> None:
    raise ValueError(message)


@shared_task(name="tests.query_database_until", base=BaseTaskWithRetry, bind=True)
def query_database_until(self, key: str, timeout: float = 60) -> int:
    """Query PostgreSQL in a loop until a test sets `key`: a running task that uses its connection."""
    from tasks_app.models import TaskRecord

    client = test_redis()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        TaskRecord.objects.filter(task_id=self.request.id).exists()
        if client.exists(key):
            return self.request.retries
        time.sleep(0.05)
    raise TimeoutError(key)


@shared_task(name="tests.retry_with_message", bind=True, max_retries=1)
def retry_with_message(self, message: str) -> None:
    """Retry once, then fail, each time with `message` in the exception (what worker logs show)."""
    raise self.retry(exc=ValueError(message), countdown=0)


@shared_task(name="tests.retry_once", bind=True, max_retries=1)
def retry_once(self, key: str) -> int:
    """Retry once (right away), then succeed: the first run claims `key`, the retry finds it taken."""
    if test_redis().set(key, 1, nx=True, ex=600):
        raise self.retry(countdown=0)
    return self.request.retries
