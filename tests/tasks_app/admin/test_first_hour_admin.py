"""What an operator looks for in the admin: times to the second, queue wait and runtime, the way
back to the API, a stale icon that means what it says, and a usable periodic-task page."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule

from conversations.models import KnowledgeDocument
from tasks_app.models import TaskRecord, TaskState
from tests.tasks_app.admin.browser import Browser, find_chromium

pytestmark = pytest.mark.django_db
TASKS = "/admin/tasks_app/taskrecord/"


def test_the_task_list_shows_seconds_the_queue_wait_and_the_runtime(admin_client):
    # given a task that waited 4.5 s for a worker and ran 2.25 s
    created = timezone.now().replace(microsecond=0) - timedelta(minutes=1)
    record = TaskRecord.objects.create(task_id="wait-1", task_name="x.y", queue="default", state=TaskState.SUCCESS)
    TaskRecord.objects.filter(pk=record.pk).update(
        created_at=created,
        started_at=created + timedelta(seconds=4.5),
        done_at=created + timedelta(seconds=6.75),
    )

    # when the operator opens the task list and the task
    page = admin_client.get(TASKS).content.decode()
    detail = admin_client.get(f"{TASKS}{record.pk}/change/").content.decode()

    # then its creation time reads to the second, and both durations are there
    stamp = timezone.localtime(created).strftime("%Y-%m-%d %H:%M:%S")
    assert re.search(rf'<td class="field-created_at[^"]*">{stamp}</td>', page), page
    assert '<td class="field-queue_wait_seconds">4.5</td>' in page
    assert '<td class="field-runtime_seconds">2.25</td>' in page
    assert stamp in detail
    assert "4.5" in detail


def test_view_site_leads_to_the_api_root(admin_client):
    page = admin_client.get("/admin/").content.decode()
    assert re.search(r'<a href="/api/v1/">[^<]*View site', page)


def test_a_document_whose_index_is_current_gets_the_green_icon(admin_client):
    # given one document indexed after its last change and one never indexed
    fresh = KnowledgeDocument.objects.create(user_id="u", title="Fresh", content="a")
    KnowledgeDocument.objects.filter(pk=fresh.pk).update(indexed_at=timezone.now() + timedelta(seconds=1))
    KnowledgeDocument.objects.create(user_id="u", title="Stale", content="b")

    # when the operator lists the documents
    page = admin_client.get("/admin/conversations/knowledgedocument/").content.decode()

    # then the column asks "index up to date?": yes (green) for the fresh one, no (red) for the stale one
    assert "Index up to date" in page
    rows = {
        title: row
        for row in re.findall(r"<tr.*?</tr>", page, flags=re.S)
        for title in ("Fresh", "Stale")
        if title in row
    }
    assert "icon-yes.svg" in rows["Fresh"]
    assert "icon-no.svg" in rows["Stale"]


CHROMIUM = find_chromium()


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (Debian: apt-get install chromium)")
@pytest.mark.parametrize(("language", "in_words"), [("en", "In words"), ("zh-hans", "含义")])
def test_the_periodic_task_page_lists_registered_tasks_and_reads_the_crontab(
    live_server, admin_user, language, in_words
):
    # given a crontab, and a fresh registered-task list (the widget caches its choices per process)
    from django.test import Client
    from django_celery_beat.admin import PeriodicTaskForm

    crontab = CrontabSchedule.objects.create(minute="0", hour="4")
    PeriodicTaskForm.base_fields["regtask"].widget._choices = None
    client = Client()
    client.force_login(admin_user)
    browser = Browser(CHROMIUM)
    try:
        browser.set_cookie(url=live_server.url, name="sessionid", value=client.cookies["sessionid"].value)
        browser.set_cookie(url=live_server.url, name="django_language", value=language)

        # when the operator opens the new periodic task page (served from the live server's thread)
        browser.open(live_server.url + "/admin/django_celery_beat/periodictask/add/")

        # then the registered tasks are listed
        options = browser.evaluate("[...document.querySelectorAll('#id_regtask option')].map(o => o.value)")
        assert "tasks_app.tasks.ai_tasks.generate_ai_response" in options

        # and the crontab's help reads it in words once chosen, and never says "undefined"
        help_text = "document.querySelector('.field-crontab .help').textContent"
        choose = "(v => { const s = document.querySelector('#id_crontab'); s.value = v; django.jQuery(s).change(); })"
        browser.evaluate(f"{choose}('{crontab.pk}')")
        assert in_words in browser.evaluate(help_text)
        browser.evaluate(f"{choose}('')")
        assert "undefined" not in browser.evaluate(help_text)
        assert in_words not in browser.evaluate(help_text)
    finally:
        browser.close()
