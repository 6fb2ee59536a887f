"""The admin's monitoring dashboard: who may see it, and that it draws the figures (in Chromium too)."""

import base64
import random
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from conversations.models import MessageRole
from monitoring.dashboard import AI_TASK
from monitoring.fold import fold_rollup
from tasks_app.models import TaskRecord, TaskState
from tests.factories import ConversationFactory, MessageFactory, StaffFactory, TaskRecordFactory
from tests.support.processes import LOG_DIR
from tests.tasks_app.admin.browser import Browser, find_chromium

URL = "/admin/monitoring/"
CHROMIUM = find_chromium()


def seed(count: int = 240) -> None:
    """Finished tasks over the last hour (a mix of names and states), AI replies with tokens and cost,
    folded into the rollup (written in the past, they are outside a periodic fold's recent minutes)."""
    rng = random.Random(17)
    now = timezone.now()
    conversation = ConversationFactory(public_id="conv_dash", user_id="user_1")
    names = [AI_TASK, "tasks_app.tasks.knowledge_tasks.index_document", "tasks_app.tasks.notification_tasks.send_email"]
    for i in range(count):
        name = names[i % 3]
        state = rng.choices([TaskState.SUCCESS, TaskState.FAILURE, TaskState.REVOKED], [85, 10, 5])[0]
        created = now - timedelta(seconds=rng.uniform(30, 3500))
        started = created + timedelta(seconds=rng.uniform(0.01, 2))
        done = started + timedelta(seconds=rng.uniform(0.2, 8 if name == AI_TASK else 1))
        record = TaskRecordFactory(task_id=f"dash-{i}", task_name=name, queue="default", user_id=f"user_{i % 7}")
        TaskRecord.objects.filter(pk=record.pk).update(
            state=state, created_at=created, started_at=started, done_at=done
        )
        if name == AI_TASK and state == TaskState.SUCCESS:
            model = "gpt-4o-mini" if i % 2 else "deepseek-chat"
            MessageFactory(
                conversation=conversation,
                role=MessageRole.ASSISTANT,
                content="reply",
                model=model,
                prompt_tokens=rng.randint(50, 900),
                completion_tokens=rng.randint(20, 400),
                cost=Decimal(rng.randint(100, 5000)) / Decimal(1_000_000),
                task_id=record.task_id,
            )
    fold_rollup(since=now - timedelta(hours=1))


@pytest.fixture
def monitoring_staff(db):
    user = StaffFactory(username="watcher")
    user.user_permissions.add(Permission.objects.get(codename="view_metrics", content_type__app_label="monitoring"))
    return user


@pytest.mark.django_db
def test_the_dashboard_needs_the_view_metrics_permission(monitoring_staff):
    staff_only = StaffFactory(username="ops")
    client = Client()
    assert client.get(URL).status_code == 302  # to the admin login
    client.force_login(staff_only)
    assert client.get(URL).status_code == 403
    client.force_login(monitoring_staff)
    assert client.get(URL).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("range_key", ["hour", "day", "week"])
def test_every_chart_has_its_unit_and_range_and_draws_the_data(monitoring_staff, range_key):
    seed(60)
    client = Client()
    client.force_login(monitoring_staff)

    page = client.get(URL, {"range": range_key}).content.decode()

    assert page.count("<figure><figcaption>") == page.count('role="img"') == 9
    assert page.count("no data in this range") <= 1  # only the queue lengths (the broker's queues are empty)
    for caption in (
        "tasks/min",
        "% of finished",
        "seconds, p50 and p95",
        "USD per",
        "tokens per",
        "Busiest chat users",
    ):
        assert caption in page
    assert {"hour": "last hour", "day": "last 24 hours", "week": "last 7 days"}[range_key] in page
    assert "deepseek-chat" in page
    assert "gpt-4o-mini" in page


@pytest.mark.django_db
def test_a_reply_finished_a_moment_ago_is_on_the_page(monitoring_staff):
    # given: nothing folded yet, then a reply that has just finished
    client = Client()
    client.force_login(monitoring_staff)
    client.get(URL)
    record = TaskRecordFactory(task_id="dash-now", task_name=AI_TASK, queue="ai_high_priority")
    now = timezone.now()
    TaskRecord.objects.filter(pk=record.pk).update(
        state=TaskState.SUCCESS, started_at=now - timedelta(seconds=2), done_at=now
    )
    MessageFactory(
        conversation=ConversationFactory(public_id="conv_now", user_id="user_now"),
        role=MessageRole.ASSISTANT,
        content="reply",
        model="model-of-this-moment",
        prompt_tokens=10,
        completion_tokens=5,
        cost=Decimal("0.001"),
        task_id=record.task_id,
    )

    # when: the page is drawn (before any periodic fold)
    page = client.get(URL, {"range": "hour"}).content.decode()

    # then: its reply, user and task are drawn
    assert "model-of-this-moment" in page
    assert "user_now" in page
    assert "generate_ai_response" in page


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine: the dashboard was not checked in a browser")
def test_the_dashboard_renders_in_chromium(live_server, monitoring_staff):
    seed()
    client = Client()
    client.force_login(monitoring_staff)
    browser = Browser(CHROMIUM)
    try:
        browser.set_cookie(url=live_server.url, name="sessionid", value=client.cookies["sessionid"].value)
        browser.open(live_server.url + URL)
        assert browser.evaluate("document.querySelectorAll('figure svg').length") == 9
        assert browser.evaluate("document.querySelectorAll('figure svg rect').length") > 50
        widths = browser.evaluate(
            "[...document.querySelectorAll('figure svg')].map(s => s.getBoundingClientRect().width)"
        )
        assert all(width > 500 for width in widths)
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        height = browser.evaluate("document.documentElement.scrollHeight")
        shot = browser.call(
            "Page.captureScreenshot",
            session=True,
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1},
        )
        png = base64.b64decode(shot["data"])
        (LOG_DIR / "monitoring-dashboard.png").write_bytes(png)
        assert len(png) > 20_000
    finally:
        browser.close()
