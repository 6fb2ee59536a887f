"""The task changelist and detail pages: filters, search, readable details, read-only records."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django_celery_results.models import TaskResult

from tasks_app.models import TaskRecord, TaskState
from tests.factories import TaskRecordFactory
from tests.tasks_app.admin.conftest import csrf_token_of

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:tasks_app_taskrecord_changelist")


def make_record(task_id: str, **fields) -> TaskRecord:
    defaults = {"task_name": "tasks_app.tasks.maintenance_tasks.health_check", "queue": "default", "priority": 5}
    return TaskRecordFactory(task_id=task_id, **{**defaults, **fields})


def listed_ids(response) -> set[str]:
    return {record.task_id for record in response.context["cl"].result_list}


@pytest.fixture
def records(admin_user):
    return {
        "ai-ok": make_record(
            "ai-ok",
            task_name="tasks_app.tasks.ai_tasks.generate_ai_response",
            queue="ai_high_priority",
            state=TaskState.SUCCESS,
            conversation_id="conv-1",
            user_id="chat-user-7",
            submitted_by=admin_user,
        ),
        "ai-failed": make_record(
            "ai-failed",
            task_name="tasks_app.tasks.ai_tasks.generate_ai_response",
            queue="ai_high_priority",
            state=TaskState.FAILURE,
            conversation_id="conv-2",
        ),
        "webhook": make_record(
            "webhook",
            task_name="tasks_app.tasks.notification_tasks.send_webhook",
            queue="notification_default",
            state=TaskState.PENDING,
        ),
        "health": make_record("health", state=TaskState.STARTED),
    }


def test_the_changelist_lists_every_record_newest_first(admin_client, records):
    # when the operator opens the task list
    response = admin_client.get(CHANGELIST)

    # then every record is there, newest first, with the state coloured
    assert response.status_code == 200
    ids = [record.task_id for record in response.context["cl"].result_list]
    assert ids == ["health", "webhook", "ai-failed", "ai-ok"]
    assert 'style="color: #fff; background: #c62828' in response.content.decode()  # FAILURE in red


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"state__exact": "FAILURE"}, {"ai-failed"}),
        ({"state__exact": "PENDING"}, {"webhook"}),
        ({"queue": "ai_high_priority"}, {"ai-ok", "ai-failed"}),
        ({"queue": "default"}, {"health"}),
        ({"task_name": "tasks_app.tasks.notification_tasks.send_webhook"}, {"webhook"}),
        ({"queue": "ai_high_priority", "state__exact": "SUCCESS"}, {"ai-ok"}),
    ],
)
def test_filters_return_the_right_rows(admin_client, records, query, expected):
    response = admin_client.get(CHANGELIST, query)
    assert response.status_code == 200
    assert listed_ids(response) == expected


def test_the_date_filter_returns_tasks_created_today(admin_client, records):
    # given one record created a month ago
    TaskRecord.objects.filter(task_id="ai-ok").update(created_at=timezone.now() - timedelta(days=30))
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)

    # when the operator filters on today (the parameters of the filter's "Today" link)
    response = admin_client.get(
        CHANGELIST,
        {"created_at__gte": str(midnight), "created_at__lt": str(midnight + timedelta(days=1))},
    )

    # then the old one is left out
    assert listed_ids(response) == {"ai-failed", "webhook", "health"}


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("ai-failed", {"ai-failed"}),  # task id
        ("conv-1", {"ai-ok"}),  # conversation id
        ("chat-user-7", {"ai-ok"}),  # chat user id
        ("nothing-like-this", set()),
    ],
)
def test_search_finds_tasks_by_task_conversation_and_user_id(admin_client, records, term, expected):
    response = admin_client.get(CHANGELIST, {"q": term})
    assert response.status_code == 200
    assert listed_ids(response) == expected


def test_search_by_owner_number_finds_their_tasks(admin_client, records, admin_user):
    response = admin_client.get(CHANGELIST, {"q": str(admin_user.pk)})
    # A number also finds the record with that number, which may exist (sequences are shared).
    same_number = {record.task_id for record in records.values() if record.pk == admin_user.pk}
    assert listed_ids(response) == {"ai-ok"} | same_number


def test_the_changelist_never_counts_the_whole_table(admin_client, records, django_assert_max_num_queries):
    # given the changelist's paginator and settings
    response = admin_client.get(CHANGELIST)
    changelist = response.context["cl"]

    # then no full count is shown and the page answers with a handful of queries
    assert changelist.show_full_result_count is False
    assert changelist.full_result_count is None
    with django_assert_max_num_queries(12) as captured:
        admin_client.get(CHANGELIST, {"state__exact": "FAILURE"})
    counts = [query["sql"] for query in captured.captured_queries if "COUNT(" in query["sql"].upper()]
    assert all("LIMIT" in sql.upper() for sql in counts), counts


def test_the_detail_page_shows_arguments_result_error_and_lineage(admin_client, records):
    # given a failed task with a result, a traceback and a retry
    failed = records["ai-failed"]
    TaskRecord.objects.filter(pk=failed.pk).update(
        args=["hello"],
        kwargs={"conversation_id": "conv-2", "temperature": 0.7},
        error="ValueError: bad input",
        traceback='Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad input',
    )
    TaskResult.objects.create(task_id=failed.task_id, status="FAILURE", result=json.dumps({"exc_type": "ValueError"}))
    retry = make_record("ai-retry", retry_of=failed, state=TaskState.PENDING)

    # when the operator opens it
    response = admin_client.get(reverse("admin:tasks_app_taskrecord_change", args=[failed.pk]))

    # then arguments are pretty JSON, the traceback monospace, and the links lead on
    page = response.content.decode()
    assert response.status_code == 200
    assert "&quot;temperature&quot;: 0.7" in page
    assert "ValueError: bad input" in page
    assert "<pre" in page
    assert "Traceback (most recent call last):" in page
    assert reverse("admin:tasks_app_taskrecord_change", args=[retry.pk]) in page
    result = TaskResult.objects.get(task_id=failed.task_id)
    assert reverse("admin:django_celery_results_taskresult_change", args=[result.pk]) in page
    assert "conv-2" in page
    # and the page is read-only: no save button
    assert 'name="_save"' not in page


def test_records_cannot_be_added_changed_or_deleted_in_the_admin(admin_client, records):
    record = records["health"]
    change_url = reverse("admin:tasks_app_taskrecord_change", args=[record.pk])
    assert admin_client.get(change_url).status_code == 200  # view only
    token = csrf_token_of(admin_client.get(CHANGELIST))

    assert admin_client.get(reverse("admin:tasks_app_taskrecord_add")).status_code == 403
    assert admin_client.post(change_url, {"csrfmiddlewaretoken": token, "state": "SUCCESS"}).status_code == 403
    delete_url = reverse("admin:tasks_app_taskrecord_delete", args=[record.pk])
    assert admin_client.post(delete_url, {"csrfmiddlewaretoken": token, "post": "yes"}).status_code == 403
    record.refresh_from_db()
    assert record.state == TaskState.STARTED


def test_task_results_are_read_only_too(admin_client):
    result = TaskResult.objects.create(task_id="r-1", status="SUCCESS")
    token = csrf_token_of(admin_client.get(CHANGELIST))

    assert (
        admin_client.get(reverse("admin:django_celery_results_taskresult_change", args=[result.pk])).status_code == 200
    )
    assert admin_client.get(reverse("admin:django_celery_results_taskresult_add")).status_code == 403
    delete_url = reverse("admin:django_celery_results_taskresult_delete", args=[result.pk])
    assert admin_client.post(delete_url, {"csrfmiddlewaretoken": token, "post": "yes"}).status_code == 403
    assert TaskResult.objects.filter(pk=result.pk).exists()
