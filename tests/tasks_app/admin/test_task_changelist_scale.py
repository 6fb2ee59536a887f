"""On a big table the task list neither counts every row nor sorts without its index."""

import pytest
from django.db import connection
from django.urls import reverse

from tasks_app.admin import TaskRecordAdmin
from tasks_app.models import TaskRecord, TaskState
from tasks_app.paginators import EXACT_COUNT_BELOW, FILTERED_COUNT_CAP

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = reverse("admin:tasks_app_taskrecord_changelist")
ROWS = EXACT_COUNT_BELOW + 5_000


@pytest.fixture
def big_table():
    states = [TaskState.SUCCESS] * 9 + [TaskState.FAILURE]
    TaskRecord.objects.bulk_create(
        (TaskRecord(task_id=f"bulk-{n}", task_name="t", queue="default", state=states[n % 10]) for n in range(ROWS)),
        batch_size=5_000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE tasks_app_taskrecord")  # what autovacuum does on a live table


def test_the_unfiltered_list_uses_the_planner_estimate_not_count(
    admin_client, big_table, django_assert_max_num_queries
):
    # when the operator opens the list of a table too big to count on every view
    with django_assert_max_num_queries(12) as captured:
        response = admin_client.get(CHANGELIST)

    # then the row count comes from PostgreSQL's estimate, with no COUNT(*) over the table
    assert response.status_code == 200
    assert abs(response.context["cl"].result_count - ROWS) < ROWS * 0.1
    assert not [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"].upper()]
    assert any("reltuples" in q["sql"] for q in captured.captured_queries)
    assert f'<span id="task-count">about {response.context["cl"].result_count}</span>' in response.content.decode()


def test_a_filtered_count_stops_at_the_cap(admin_client, big_table):
    response = admin_client.get(CHANGELIST, {"state__exact": "SUCCESS"})
    assert response.context["cl"].result_count == FILTERED_COUNT_CAP + 1
    assert f'<span id="task-count">more than {FILTERED_COUNT_CAP}</span>' in response.content.decode()
    failures = admin_client.get(CHANGELIST, {"state__exact": "FAILURE"})
    assert failures.context["cl"].result_count == ROWS // 10


def test_the_first_page_is_read_through_the_created_index(admin_client, big_table):
    # given the changelist's queryset for its first page
    response = admin_client.get(CHANGELIST)
    queryset = response.context["cl"].queryset[: TaskRecordAdmin.list_per_page]

    # then PostgreSQL reads it from the (-created_at, -id) index instead of sorting the table
    plan = queryset.explain()
    assert "taskrec_created_idx" in plan, plan
    assert "Sort" not in plan.split("\n")[0], plan
