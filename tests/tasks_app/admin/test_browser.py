"""The task admin renders in a real headless browser (Debian's chromium): list and detail."""

import pytest
from django.test import Client
from django.urls import reverse

from tasks_app.models import TaskState
from tests.factories import TaskRecordFactory
from tests.support.processes import LOG_DIR
from tests.tasks_app.admin.browser import Browser, find_chromium

CHROMIUM = find_chromium()
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no chromium on this machine (Debian: apt-get install chromium): the admin was not checked in a browser",
    ),
]


@pytest.fixture
def browser():
    opened = Browser(CHROMIUM)
    yield opened
    opened.close()


def test_the_task_changelist_and_detail_render_in_chromium(live_server, browser, admin_user):
    # given a failed task with a traceback, and an operator's session
    record = TaskRecordFactory(
        task_id="browser-check-1",
        task_name="tasks_app.tasks.ai_tasks.generate_ai_response",
        queue="ai_high_priority",
        priority=9,
        state=TaskState.FAILURE,
        kwargs={"conversation_id": "conv-browser", "temperature": 0.5},
        error="TimeoutError: provider did not answer",
        traceback="Traceback (most recent call last):\nTimeoutError: provider did not answer",
    )
    client = Client()
    client.force_login(admin_user)
    browser.set_cookie(url=live_server.url, name="sessionid", value=client.cookies["sessionid"].value)
    LOG_DIR.mkdir(parents=True, exist_ok=True)

    # when chromium opens the task list
    browser.open(live_server.url + reverse("admin:tasks_app_taskrecord_changelist"))

    # then the list shows the task with its coloured state, the filters and the actions, styled by the admin CSS
    page = browser.evaluate("document.documentElement.outerHTML")
    assert "generate_ai_response" in page
    assert browser.evaluate("document.querySelector('#changelist-filter') !== null")
    assert browser.evaluate("[...document.querySelectorAll('select[name=action] option')].map(o => o.value)") == [
        "",
        "retry_selected",
        "cancel_selected",
    ]
    state_badge = "[...document.querySelectorAll('#result_list span')].find(s => s.textContent === 'FAILURE')"
    assert browser.evaluate(f"getComputedStyle({state_badge}).backgroundColor") == "rgb(198, 40, 40)"
    assert browser.evaluate("getComputedStyle(document.querySelector('#header')).display") != "inline"  # CSS loaded
    assert len(browser.screenshot(LOG_DIR / "admin-task-list.png")) > 10_000

    # when it opens the task's detail page
    browser.open(live_server.url + reverse("admin:tasks_app_taskrecord_change", args=[record.pk]))

    # then the kwargs are pretty JSON and the traceback is monospace
    assert "View task record" in browser.evaluate("document.title")
    blocks = browser.evaluate("[...document.querySelectorAll('pre')].map(p => p.textContent)")
    assert any('"temperature": 0.5' in block for block in blocks)
    assert any(block.startswith("Traceback (most recent call last):") for block in blocks)
    assert "monospace" in browser.evaluate("getComputedStyle(document.querySelector('pre')).fontFamily")
    assert len(browser.screenshot(LOG_DIR / "admin-task-detail.png")) > 10_000
