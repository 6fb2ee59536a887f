"""Token and cost budgets: refused at submit past them, reserved while replies run, set in the admin."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from conversations.models import Budget, BudgetScope, Conversation, Message, MessageRole
from conversations.prompts import build_prompt
from conversations.services import AI_GENERATION_TASK
from tasks_app.models import TaskRecord, TaskState
from tasks_app.services import submit_task
from tasks_app.tasks.ai_tasks import generate_ai_response
from tests.support.fake_llm import FakeLLM, answer, slow
from tests.support.sse import EventStream, reply_text
from tests.support.waiting import wait_for
from tests.tasks_app.api.conftest import grant_operator

pytestmark = [pytest.mark.django_db(transaction=True)]

GENERATE = "/api/v1/tasks/ai/generate"
USAGE = "/api/v1/usage"
QUEUE = "test_budget_replies"


def client_of(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def spend(tenant, user_id: str, *, tokens: int = 0, cost: str = "0") -> None:
    """A reply saved today for `user_id` of `tenant`, as the ledger keeps it."""
    conversation, _created = Conversation.objects.get_or_create(
        public_id=f"conv_{user_id}", created_by=tenant, defaults={"user_id": user_id}
    )
    Message.objects.create(
        conversation=conversation,
        role=MessageRole.ASSISTANT,
        content="earlier answer",
        prompt_tokens=tokens // 2,
        completion_tokens=tokens - tokens // 2,
        cost=Decimal(cost),
    )


def submit(client, user_id: str = "u1", **headers):
    body = {"conversation_id": f"conv_{user_id}", "user_message": "hi", "user_id": user_id}
    return client.post(GENERATE, body, format="json", **headers)


def seconds_to_midnight() -> float:
    now = timezone.now()
    midnight = (now + timezone.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - now).total_seconds()


def test_a_chat_user_at_its_daily_tokens_gets_429_budget_exceeded_with_retry_after(alice):
    # given every chat user may use 100 tokens a day, and u1 of alice has used them
    Budget.objects.create(scope=BudgetScope.CHAT_USER, tokens_per_day=100)
    spend(alice, "u1", tokens=100)

    # when alice submits a reply for u1
    response = submit(client_of(alice))

    # then 429 budget_exceeded, retry after the day's end, with what is left
    assert response.status_code == 429
    body = response.json()
    assert body["code"] == "budget_exceeded"
    assert body["message"].startswith("The AI budget of this chat user is used up until ")
    assert abs(int(response["Retry-After"]) - seconds_to_midnight()) <= 2
    assert body["retry_after"] == int(response["Retry-After"])
    (chat_user,) = body["budgets"]
    assert chat_user["scope"] == "chat_user"
    assert chat_user["used"]["tokens_today"] == 100
    assert chat_user["remaining"]["tokens_today"] == 0
    assert chat_user["exceeded"] == ["tokens_per_day"]
    # and nothing was queued
    assert not TaskRecord.objects.exists()


def test_the_budget_message_is_translated_for_chinese(alice):
    Budget.objects.create(scope=BudgetScope.CHAT_USER, tokens_per_day=100)
    spend(alice, "u1", tokens=150)

    response = submit(client_of(alice), HTTP_ACCEPT_LANGUAGE="zh-CN")

    assert response.status_code == 429
    assert response.json()["message"].startswith("该聊天用户的 AI 预算已用完，将于 ")
    assert "Retry-After" in response


def test_a_monthly_cost_budget_of_the_api_user_waits_for_next_month(alice, bob):
    # given alice (the API user) may spend 1 USD a month and has; bob's spending is bob's own
    Budget.objects.create(scope=BudgetScope.API_USER, tenant=alice, cost_per_month=Decimal("1"))
    spend(alice, "u7", cost="1.000000")
    spend(bob, "u1", cost="5.0")

    # when alice submits for any chat user
    response = submit(client_of(alice), user_id="u2")

    # then refused until the first of next month
    assert response.status_code == 429
    body = response.json()
    assert body["resets_at"].startswith(_next_month_start().isoformat()[:10])
    assert body["budgets"][0]["scope"] == "api_user"
    assert body["budgets"][0]["exceeded"] == ["cost_per_month"]


def _next_month_start():
    now = timezone.now()
    return (now.replace(day=1) + timezone.timedelta(days=32)).replace(day=1)


def test_an_admin_change_of_a_budget_applies_to_the_next_submit(alice, celery_worker, admin_client):
    # given alice's chat user u1 over the default budget
    budget = Budget.objects.create(scope=BudgetScope.CHAT_USER, tokens_per_day=100)
    spend(alice, "u1", tokens=120)
    assert submit(client_of(alice)).status_code == 429

    # when an operator raises the budget in the admin
    change = f"/admin/conversations/budget/{budget.pk}/change/"
    form = {"scope": "chat_user", "tenant": "", "user_id": "", "tokens_per_day": "1000"}
    assert admin_client.post(change, {**form, "cost_per_day": "", "cost_per_month": ""}).status_code == 302

    # then the next submit is accepted, without any restart
    accepted = submit(client_of(alice))
    assert accepted.status_code == 202
    wait_for(
        lambda: TaskRecord.objects.filter(task_id=accepted.json()["task_id"], state=TaskState.SUCCESS).exists(),
        timeout=30,
        what="the accepted reply",
    )


def test_the_admin_form_refuses_negative_and_absurd_budgets(admin_client):
    for figures in ({"tokens_per_day": "-5"}, {"tokens_per_day": "10000000000000"}, {"cost_per_day": "-0.01"}):
        form = {"scope": "chat_user", "tenant": "", "user_id": "", "tokens_per_day": "", "cost_per_day": ""}
        response = admin_client.post("/admin/conversations/budget/add/", {**form, "cost_per_month": "", **figures})
        assert response.status_code == 200  # the form again, with its error
        assert response.context["adminform"].form.errors, figures
    assert not Budget.objects.exists()


def test_a_chat_user_override_beats_the_default(alice):
    # given a default of 100 tokens a day, and 10,000 for alice's u1
    Budget.objects.create(scope=BudgetScope.CHAT_USER, tokens_per_day=100)
    Budget.objects.create(scope=BudgetScope.CHAT_USER, tenant=alice, user_id="u1", tokens_per_day=10_000)
    spend(alice, "u1", tokens=500)
    spend(alice, "u2", tokens=500)

    # when alice asks for the usage of each
    usage = client_of(alice).get(USAGE, {"user_id": "u1"}).json()
    other = client_of(alice).get(USAGE, {"user_id": "u2"}).json()

    # then u1 has its own budget, u2 the default (used up)
    assert usage["chat_user"]["limits"]["tokens_per_day"] == 10_000
    assert usage["chat_user"]["remaining"]["tokens_today"] == 9_500
    assert other["chat_user"]["remaining"]["tokens_today"] == 0


def test_usage_shows_the_callers_own_figures_and_others_only_with_the_permission(alice, bob):
    # given budgets for every API user, alice's spending, and an operator
    Budget.objects.create(scope=BudgetScope.API_USER, tokens_per_day=5000, cost_per_month=Decimal("20"))
    spend(alice, "u1", tokens=300, cost="0.25")
    operator = grant_operator(get_user_model().objects.create_user("ops", password="pw"))

    # when alice, bob and the operator ask
    own = client_of(alice).get(USAGE)
    bobs_try = client_of(bob).get(USAGE, {"tenant": "alice"})
    operators = client_of(operator).get(USAGE, {"tenant": "alice"})
    unknown = client_of(operator).get(USAGE, {"tenant": "nobody"})

    # then alice sees hers, bob is refused, the operator sees alice's, an unknown tenant is a 400
    assert own.status_code == 200
    body = own.json()
    assert body["tenant"] == "alice"
    assert body["api_user"]["used"] == {"tokens_today": 300, "cost_today": 0.25, "cost_this_month": 0.25}
    assert body["api_user"]["remaining"]["cost_this_month"] == 19.75
    assert body["replies"] == {"waiting": 0, "running": 0}
    assert bobs_try.status_code == 403
    assert operators.status_code == 200
    assert operators.json()["api_user"]["used"]["tokens_today"] == 300
    assert unknown.status_code == 400
    assert client_of(bob).get(USAGE).json()["api_user"]["used"]["tokens_today"] == 0
    assert APIClient().get(USAGE).status_code in (401, 403)


def test_the_admin_usage_page_shows_a_user_against_budget(alice, admin_client):
    Budget.objects.create(scope=BudgetScope.API_USER, tokens_per_day=5000)
    spend(alice, "u1", tokens=300)

    page = admin_client.get("/admin/conversations/budget/usage/", {"tenant": alice.pk})

    assert page.status_code == 200
    text = page.content.decode()
    assert "alice" in text
    assert "300" in text
    assert "5000" in text
    assert "4700" in text


@pytest.mark.e2e
def test_two_replies_at_once_near_the_limit_pass_it_by_at_most_one_reply(alice, start_worker, settings):
    # given 1,000 tokens a day for every chat user, 900 of them used, and a worker running two
    # replies at once on a provider that writes 300 tokens unless capped
    Budget.objects.create(scope=BudgetScope.CHAT_USER, tokens_per_day=1000)
    spend(alice, "u1", tokens=900)
    provider = FakeLLM()
    provider.default = slow(0.5, answer("long answer", prompt_tokens=10, completion_tokens=300))
    env = {"LLM_PROVIDER": "openai", "LLM_BASE_URL": provider.base_url, "LLM_API_KEY": "sk-test"}
    start_worker(queues=[QUEUE], pool="threads", concurrency=2, env=env)

    # when two replies for that chat user are sent at once
    sent = [
        generate_ai_response.apply_async(
            kwargs={"conversation_id": f"conv_u1_{n}", "user_message": f"q{n}", "user_id": "u1", "tenant_id": alice.pk},
            queue=QUEUE,
        ).id
        for n in range(2)
    ]

    # then both finish; the day's tokens pass 1,000 by no more than one reply's cap (the 100 left)
    records = wait_for(
        lambda: (
            (done := list(TaskRecord.objects.filter(task_id__in=sent, state__in=["SUCCESS", "FAILURE"])))
            and len(done) == 2
            and done
        ),
        timeout=30,
        what="both replies to finish",
    )
    replies = Message.objects.filter(conversation__created_by=alice, role=MessageRole.ASSISTANT)
    used = sum(message.prompt_tokens + message.completion_tokens for message in replies)
    assert used <= 1000 + 100
    # and the provider was asked for no more than what was left
    assert all(0 < request.body["max_tokens"] <= 100 for request in provider.requests)
    # and both ended because of the budget: one cut where it ran out, the other (which found
    # nothing left) before its first word, with an empty reply of 0 tokens
    assert [record.state for record in records] == [TaskState.SUCCESS] * 2
    ended = replies.exclude(content="earlier answer").order_by("completion_tokens")
    assert [message.finish_reason for message in ended] == ["budget", "budget"]
    refused, cut = ended
    assert (refused.content, refused.total_tokens, refused.cost) == ("", 0, 0)
    assert cut.content
    assert cut.completion_tokens > 0
    assert len(provider.requests) == 1
    provider.stop()


@pytest.mark.e2e
def test_a_reply_whose_budget_ran_out_after_submit_ends_the_turn_saying_so(alice, consume_queue, web_server):
    # given a chat user under its daily tokens when its reply is submitted (to a queue nobody
    # consumes yet), and a live client watching the reply's stream
    Budget.objects.create(scope=BudgetScope.CHAT_USER, tokens_per_day=1000)
    spend(alice, "u1", tokens=500)
    task = send_reply(alice)
    token = Token.objects.create(user=alice).key
    stream = EventStream(web_server.port, f"/api/v1/tasks/stream/{task.task_id}", token=token)
    assert stream.next_event().data == {"status": "PENDING"}

    # when other replies spend the rest of the budget before a worker takes it
    spend(alice, "u1", tokens=500)
    consume_queue(QUEUE)

    # then the stream ends with `done`: an empty reply the budget ended, 0 tokens, 0 cost
    events = stream.events_until(lambda event: event.event in ("done", "error", "cancelled"))
    stream.close()
    done = events[-1]
    assert done.event == "done"
    assert done.data["status"] == TaskState.SUCCESS
    result = done.data["result"]
    assert result["finish_reason"] == "budget"
    assert (result["response"], result["tokens"]["total"], result["cost"]) == ("", 0, 0.0)
    assert reply_text(events) == ""
    # and the conversation shows the question answered by the budget, not left hanging
    conversation = client_of(alice).get("/api/v1/conversations/conv_u1/").json()
    turn = [(m["role"], m["content"], m["finish_reason"]) for m in conversation["messages"] if m["task_id"]]
    assert turn == [("user", "hi", ""), ("assistant", "", "budget")]

    # when the task's message is delivered again (a late ack's redelivery, same id)
    again = generate_ai_response.apply_async(kwargs=task.kwargs, queue=QUEUE, task_id=task.task_id)

    # then it gives the same end, and the question is not asked twice
    assert again.get(timeout=30)["message_id"] == result["message_id"]
    assert Message.objects.filter(conversation__public_id="conv_u1", content="hi").count() == 1
    # and a later turn's prompt leaves the empty reply out of the history
    later = build_prompt(Conversation.objects.get(public_id="conv_u1"), Message(content="next", id=10**9))
    assert [(message.role, message.content) for message in later[1:]] == [
        ("assistant", "earlier answer"),
        ("assistant", "earlier answer"),
        ("user", "hi"),
        ("user", "next"),
    ]


def send_reply(tenant, user_id: str = "u1") -> TaskRecord:
    """An AI reply as /ai/generate submits it (past the budget check), to the test's own queue."""
    kwargs = {"conversation_id": f"conv_{user_id}", "user_message": "hi", "user_id": user_id, "tenant_id": tenant.pk}
    return submit_task(task_name=AI_GENERATION_TASK, kwargs=kwargs, queue=QUEUE, submitted_by=tenant)
