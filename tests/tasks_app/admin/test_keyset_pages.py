"""The task list and the TaskResult list page by keyset: every page one index range scan, at any depth."""

import html
import re
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_celery_results.models import TaskResult

from tasks_app.models import TaskRecord, TaskState

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:tasks_app_taskrecord_changelist")
RESULTS = reverse("admin:django_celery_results_taskresult_changelist")
ROWS = 125  # two full pages of 50 and a part page
LINK = re.compile(r'<a href="([^"]+)" rel="(first|prev|next|last)">')


@pytest.fixture
def records():
    """125 records created four to a second (ties broken by id), every third one FAILURE."""
    TaskRecord.objects.bulk_create(
        TaskRecord(
            task_id=f"t-{n:03}",
            task_name="t",
            queue="default",
            state=TaskState.FAILURE if n % 3 == 0 else TaskState.SUCCESS,
        )
        for n in range(ROWS)
    )
    start = timezone.now() - timedelta(hours=1)
    for record in TaskRecord.objects.all():
        number = int(record.task_id[2:])
        TaskRecord.objects.filter(pk=record.pk).update(created_at=start + timedelta(seconds=number // 4))
    # Newest first, as the list shows them: latest second first, the higher id first within a second.
    return list(TaskRecord.objects.order_by("-created_at", "-id").values_list("task_id", flat=True))


def links(response) -> dict[str, str]:
    return {rel: html.unescape(href) for href, rel in LINK.findall(response.content.decode())}


def shown(response) -> list[str]:
    return [row.task_id for row in response.context["cl"].result_list]


def follow(client, url: str, rel: str, count: int, **params) -> list[list[str]]:
    """The pages met by following the `rel` link from `url`, `count` times (the first page included)."""
    response = client.get(url, params)
    pages = [shown(response)]
    for _ in range(count):
        response = client.get(url + links(response)[rel])
        assert response.status_code == 200
        pages.append(shown(response))
    return pages


def test_next_links_walk_every_record_once_in_order(admin_client, records):
    # when the operator follows Next from the first page to the end
    pages = follow(admin_client, CHANGELIST, "next", 2)

    # then every record shows once, newest first, 50 to a page, ties at the same second included
    assert [len(page) for page in pages] == [50, 50, 25]
    assert [task_id for page in pages for task_id in page] == records
    last = admin_client.get(CHANGELIST + links(admin_client.get(CHANGELIST))["next"])
    assert "next" in links(last)
    assert "prev" in links(last)


def test_previous_links_come_back_through_the_same_pages(admin_client, records):
    # given the operator at the last page (the Last link: the oldest records)
    first = admin_client.get(CHANGELIST)
    last = admin_client.get(CHANGELIST + links(first)["last"])
    assert shown(last) == records[-50:]
    assert "next" not in links(last)

    # when they follow Previous back to the start
    pages = [shown(last)]
    response = last
    while "prev" in links(response):
        response = admin_client.get(CHANGELIST + links(response)["prev"])
        pages.append(shown(response))

    # then they meet full pages back to the first page as its own link shows it
    assert pages[-1] == records[:50]
    assert {task_id for page in pages for task_id in page} == set(records)
    assert "prev" not in links(response)


def test_deep_pages_run_no_offset(admin_client, records):
    # given the second page's link
    second = links(admin_client.get(CHANGELIST))["next"]

    # when the operator opens it
    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(CHANGELIST + second)

    # then its rows come from a range scan of the sort key, with no OFFSET (a big table is not counted
    # either: test_task_changelist_scale)
    assert response.status_code == 200
    assert "OFFSET" not in " ".join(query["sql"].upper() for query in captured.captured_queries)


def test_filters_apply_on_every_page_and_their_links_start_again(admin_client, records):
    failures = [task_id for task_id in records if int(task_id[2:]) % 3 == 0]

    pages = follow(admin_client, CHANGELIST, "next", 0, state__exact="FAILURE")
    assert pages == [failures]  # 42 failures: one page

    # a filter link on a later page leads to the first page of the new choice (no cursor kept)
    second = admin_client.get(CHANGELIST + links(admin_client.get(CHANGELIST))["next"])
    assert "cursor=" in second.request["QUERY_STRING"]
    assert "?state__exact=FAILURE" in second.content.decode()
    assert "cursor=" not in re.search(r'href="(\?state__exact=FAILURE[^"]*)"', second.content.decode()).group(1)


def test_search_and_sort_by_id_page_by_their_own_key(admin_client, records):
    by_id = list(TaskRecord.objects.order_by("id").values_list("task_id", flat=True))

    # sorted by id, ascending (the first column, "o=1")
    pages = follow(admin_client, CHANGELIST, "next", 2, o="1")
    assert [task_id for page in pages for task_id in page] == by_id

    found = admin_client.get(CHANGELIST, {"q": "t-007"})
    assert shown(found) == ["t-007"]
    assert not links(found)


def test_a_page_number_or_a_broken_cursor_shows_the_first_page_and_says_why(admin_client, records):
    for params in ({"p": "10000"}, {"cursor": "not-a-cursor"}, {"cursor": "WyJuIiwgWzFdXQ"}):  # ["n", [1]]
        response = admin_client.get(CHANGELIST, params)
        assert response.status_code == 200, params
        assert shown(response) == records[:50], params
        assert [str(m) for m in get_messages(response.wsgi_request)], params


@pytest.fixture
def results():
    TaskResult.objects.bulk_create(
        TaskResult(task_id=f"r-{n:03}", status="FAILURE" if n % 3 == 0 else "SUCCESS", task_name="t")
        for n in range(ROWS)
    )
    start = timezone.now() - timedelta(hours=1)
    for result in TaskResult.objects.all():
        number = int(result.task_id[2:])
        TaskResult.objects.filter(pk=result.pk).update(date_done=start + timedelta(seconds=number // 4))
    return list(TaskResult.objects.order_by("-date_done", "-id").values_list("task_id", flat=True))


def test_the_task_result_list_pages_by_keyset_too(admin_client, results):
    # when the operator walks the stored results
    with CaptureQueriesContext(connection) as captured:
        pages = follow(admin_client, RESULTS, "next", 2)

    # then each shows once, newest first, with no OFFSET and no DISTINCT over the table
    assert [task_id for page in pages for task_id in page] == results
    sql = " ".join(query["sql"].upper() for query in captured.captured_queries)
    assert "OFFSET" not in sql
    assert "DISTINCT" not in sql


def test_the_task_result_list_filters_and_searches_by_index(admin_client, results):
    failures = [task_id for task_id in results if int(task_id[2:]) % 3 == 0]
    assert follow(admin_client, RESULTS, "next", 0, status__exact="FAILURE") == [failures]
    with CaptureQueriesContext(connection) as captured:
        assert shown(admin_client.get(RESULTS, {"q": "r-042"})) == ["r-042"]
    assert not [q["sql"] for q in captured.captured_queries if "UPPER(" in q["sql"]]  # the unique index serves it
    assert shown(admin_client.get(RESULTS, {"q": "r-04"})) == []  # exact ids only: no LIKE scan
    response = admin_client.get(RESULTS)
    assert not response.context["cl"].model_admin.has_change_permission(response.wsgi_request)
