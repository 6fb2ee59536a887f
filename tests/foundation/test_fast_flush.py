"""The flush after each transactional test (tests/support/flush.py) leaves what migrate left."""

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django_celery_beat.models import PeriodicTask

from tasks_app.models import TaskRecord, TaskState
from tests.factories import UserFactory
from tests.support import flush

pytestmark = pytest.mark.django_db(transaction=True)


def every_row() -> dict[str, list[str]]:
    quote = connection.ops.quote_name
    rows = {}
    with connection.cursor() as cursor:
        for table in connection.introspection.django_table_names(only_existing=True, include_views=False):
            cursor.execute(f"SELECT ARRAY(SELECT r::text FROM {quote(table)} r ORDER BY 1)")
            rows[table] = cursor.fetchone()[0]
    return rows


def pg_estimate(table: str) -> float:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [table])
        return cursor.fetchone()[0]


def test_a_flush_empties_what_the_test_wrote_and_restores_what_migrate_made():
    # given the database as migrate left it (content types, permissions, the periodic jobs)
    before = every_row()
    assert before["auth_permission"]
    assert before["django_celery_beat_periodictask"]

    # when a test writes tasks (and the counters their triggers keep), renames a permission,
    # deletes a periodic job (remembered as deleted) and fills a table past BIG rows
    user = UserFactory()
    TaskRecord.objects.bulk_create(
        TaskRecord(task_id=f"t-{n}", task_name="t", queue="default", state=TaskState.SUCCESS, submitted_by=user)
        for n in range(flush.BIG + 10)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE tasks_app_taskrecord")
    Permission.objects.filter(pk=Permission.objects.first().pk).update(name="renamed")
    PeriodicTask.objects.first().delete()
    assert every_row() != before

    # then the flush leaves every table as it was, and the big table's planner estimate starts over
    flush._flush("default")
    assert every_row() == before
    assert pg_estimate("tasks_app_taskrecord") <= 0


def test_a_flush_after_a_test_that_wrote_nothing_changes_nothing():
    before = every_row()
    flush._flush("default")
    assert every_row() == before
