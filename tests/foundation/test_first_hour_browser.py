"""What a newcomer sees in a browser (headless Chromium): the API root, the generate page after a
202 and after a 400, and the task admin at 1,280 px. Screenshots go to .devdata/test-artifacts/."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from tasks_app.models import TaskRecord, TaskState
from tests.support.processes import ROOT
from tests.tasks_app.admin.browser import Browser, find_chromium

CHROMIUM = find_chromium()
ARTIFACTS = ROOT / ".devdata" / "test-artifacts"
pytestmark = [
    pytest.mark.django_db(transaction=True),  # the live server's thread publishes tasks
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no chromium on this machine (Debian: apt-get install chromium): pages were not checked in a browser",
    ),
]
GENERATE = "/api/v1/tasks/ai/generate"


@pytest.fixture
def browser():
    opened = Browser(CHROMIUM)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield opened
    opened.close()


def sign_in(browser: Browser, live_server, user) -> None:
    client = Client()
    client.force_login(user)
    browser.set_cookie(url=live_server.url, name="sessionid", value=client.cookies["sessionid"].value)


def submit_generate_form(browser: Browser, **fields: str) -> None:
    """Fill the generate page's HTML form as a person would, and press its POST button."""
    fill = "".join(f"form.querySelector('[name={name}]').value = {value!r};" for name, value in fields.items())
    browser.evaluate(
        "(() => { const form = document.querySelector('form [name=user_message]').form;"
        f"{fill} form.querySelector('button[type=submit], .btn-primary').click(); }})()"
    )


def wait_for_page(browser: Browser, timeout: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not any(event.get("method") == "Page.loadEventFired" for event in browser.events):
        browser.events.append(browser._read(max(deadline - time.monotonic(), 0.01)))


def test_the_api_root_in_a_browser_links_every_endpoint(live_server, browser, alice):
    sign_in(browser, live_server, alice)

    browser.open(live_server.url + "/api/v1/")

    links = browser.evaluate("[...document.querySelectorAll('.response-info a')].map(a => a.textContent)")
    for path in ("tasks/status/{task_id}", "tasks/list", "tasks/ai/generate", "tasks/workers/shutdown"):
        assert f"{live_server.url}/api/v1/{path}" in links, links
    assert browser.evaluate("document.querySelector('h1').textContent.trim()") == "CLAW.AI API"
    assert len(browser.screenshot(ARTIFACTS / "api-root.png")) > 10_000


def test_the_generate_page_after_a_202_and_after_a_400(live_server, browser, alice):
    sign_in(browser, live_server, alice)
    browser.open(live_server.url + GENERATE)
    assert "AI generate" in browser.evaluate("document.title")

    # when a question is sent from the page's form
    browser.events.clear()
    submit_generate_form(browser, conversation_id="conv_browser", user_id="user_456", user_message="Hello")
    wait_for_page(browser)

    # then the answer stands above the form, which is there again with the question's fields
    response = browser.evaluate("document.querySelector('.response-info').textContent")
    assert "HTTP 202" in response
    assert "task_id" in response
    assert browser.evaluate("document.querySelector('form [name=user_message]') !== null")
    assert browser.evaluate("document.querySelector('form [name=conversation_id]').value") == "conv_browser"
    below = browser.evaluate(
        "document.querySelector('.response-info').compareDocumentPosition("
        "document.querySelector('form [name=user_message]')) & Node.DOCUMENT_POSITION_FOLLOWING"
    )
    assert below
    browser.screenshot(ARTIFACTS / "generate-after-202.png")

    # when the next one is sent with a temperature out of range
    browser.events.clear()
    submit_generate_form(browser, user_message="again", temperature="7")
    wait_for_page(browser)

    # then the error stands beside the temperature field, and what was typed is kept
    assert "HTTP 400" in browser.evaluate("document.querySelector('.response-info').textContent")
    group = "document.querySelector('form [name=temperature]').closest('.form-group')"
    assert browser.evaluate(f"{group}.classList.contains('has-error')")
    assert browser.evaluate(f"{group}.querySelector('.help-block').textContent.trim()") != ""
    assert browser.evaluate("document.querySelector('form [name=user_message]').value") == "again"
    browser.screenshot(ARTIFACTS / "generate-after-400.png")


def test_the_task_list_fits_1280_pixels_with_every_column(live_server, browser, django_user_model):
    # given tasks that waited, ran, failed and were retried
    now = timezone.now()
    for index, state in enumerate([TaskState.SUCCESS, TaskState.FAILURE, TaskState.STARTED, TaskState.PENDING]):
        record = TaskRecord.objects.create(
            task_id=f"browser-fit-{index}-0f6a-9a51-0c3c8f1e7b10",
            # the longest names of the system's tasks and queues
            task_name="tasks_app.tasks.knowledge_tasks.reindex_stale_documents"
            if index % 2
            else "tasks_app.tasks.ai_tasks.generate_ai_response",
            queue="notification_default" if index % 2 else "ai_high_priority",
            priority=5,
            state=state,
            conversation_id=f"conv_{index}_a_rather_long_conversation_id",
            retries=index,
        )
        started = now - timedelta(seconds=30 - index) if state != TaskState.PENDING else None
        done = started + timedelta(seconds=2.5) if state in (TaskState.SUCCESS, TaskState.FAILURE) else None
        TaskRecord.objects.filter(pk=record.pk).update(
            created_at=now - timedelta(seconds=35), started_at=started, done_at=done
        )
    operator = django_user_model.objects.create_superuser("operator", password="pw")
    sign_in(browser, live_server, operator)

    # when the operator opens the task list in a 1,280 px wide window
    browser.open(live_server.url + "/admin/tasks_app/taskrecord/")

    # then every column is inside the window: no header cut off, no sideways scrolling
    browser.screenshot(ARTIFACTS / "admin-task-list-1280.png")
    assert browser.evaluate("window.innerWidth") == 1280
    headers = browser.evaluate(
        "[...document.querySelectorAll('#result_list thead th')].map(th => ["
        "(th.querySelector('.text') || th).textContent.replace(/\\s+/g, ' ').trim(), th.getBoundingClientRect().right])"
    )
    titles = [text.lower() for text, _ in headers]
    for title in ("created", "queue wait (s)", "runtime (s)", "retries"):
        assert title in titles, " | ".join(titles)
    visible_until = browser.evaluate("document.querySelector('#changelist .results').getBoundingClientRect().right")
    assert visible_until <= 1280
    assert all(right <= visible_until + 1 for _, right in headers), headers
    assert browser.evaluate("(r => r.scrollWidth <= r.clientWidth)(document.querySelector('#changelist .results'))")
    assert browser.evaluate("document.documentElement.scrollWidth") <= 1280
    # and times read to the second, with the wait before each start
    cells = browser.evaluate("[...document.querySelectorAll('td.field-created_at')].map(td => td.textContent)")
    assert all(len(cell.split(":")) == 3 for cell in cells), cells
    waits = browser.evaluate("[...document.querySelectorAll('td.field-queue_wait_seconds')].map(td => td.textContent)")
    assert "5.0" in waits, waits
    assert browser.evaluate("document.querySelector('#user-tools a[href=\"/api/v1/\"]') !== null")  # View site
    browser.screenshot(ARTIFACTS / "admin-task-list-1280.png")
