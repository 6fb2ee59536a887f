"""Fairness between chat users and the order of a conversation's turns, on two real workers.

A chat user has at most AI_MAX_CONCURRENT_PER_USER (2) replies admitted at once; the rest wait in
PostgreSQL (conversations.admission), so another user's reply does not queue behind a burst; a
conversation's replies run one at a time in the order they were sent.
"""

import time

import pytest

from conversations.admission import sweep_waiting_replies
from conversations.models import Budget, BudgetScope, Conversation, ReplyAdmission
from conversations.services import submit_ai_generation
from tasks_app.lifeline import rescue_orphaned_tasks
from tasks_app.models import TaskRecord, TaskState
from tests.support.fake_llm import FakeLLM, answer, slow
from tests.support.waiting import wait_for
from tests.support.workers import Worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.worker]

QUEUE = "test_admission"
KILL_QUEUE = "test_admission_kill"
IDLE_QUEUE = "test_admission_idle"


def provider_env(provider: FakeLLM) -> dict:
    return {
        "LLM_PROVIDER": "openai",
        "LLM_BASE_URL": provider.base_url,
        "LLM_API_KEY": "sk-test",
        "LLM_TIMEOUT": "30",
        "DJANGO_DB_POOL_MAX_SIZE": "4",
    }


@pytest.fixture(scope="module")
def provider():
    server = FakeLLM()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def two_workers(provider, django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        workers = [Worker(queues=[QUEUE], pool="threads", concurrency=4, env=provider_env(provider)) for _ in range(2)]
        for worker in workers:
            worker.wait_ready()
    yield workers
    for worker in workers:
        worker.stop(graceful=False)


def send(tenant, user_id: str, conversation: str, question: str, *, queue: str = QUEUE, priority: int | None = None):
    return submit_ai_generation(
        conversation_id=conversation,
        user_message=question,
        temperature=0.5,
        user_id=user_id,
        priority=priority,
        submitted_by=tenant,
        queue=queue,
    ).task_id


def all_done(task_ids: list[str], *, timeout: float = 60) -> None:
    wait_for(
        lambda: TaskRecord.objects.filter(task_id__in=task_ids, state=TaskState.SUCCESS).count() == len(task_ids),
        timeout=timeout,
        interval=0.2,
        what=f"{len(task_ids)} replies to succeed",
    )


def arrival_of(provider: FakeLLM, question: str) -> float | None:
    return next((r.at for r in provider.requests if r.messages and r.messages[-1]["content"] == question), None)


def test_another_users_reply_starts_at_once_behind_a_burst(two_workers, provider, alice):
    # given a provider taking 0.5 s a reply, and chat user A who sends 30 replies in a burst
    provider.script()
    provider.limit()
    provider.default = slow(0.5, answer("ok"))
    burst = [send(alice, "user_a", f"conv_a_{n}", f"A question {n}") for n in range(30)]

    # then only two of A's are in the workers' hands; the others wait in PostgreSQL, saying why
    records = TaskRecord.objects.filter(task_id__in=burst).exclude(state=TaskState.SUCCESS)
    waiting = records.filter(state=TaskState.PENDING, error="waiting: user_concurrency")
    assert records.count() - waiting.count() <= 2
    assert waiting.count() >= 10

    # when chat user B sends one
    submitted = time.monotonic()
    send(alice, "user_b", "conv_b", "B question")

    # then B's reply reaches the provider within 2 s (not after A's 30 replies: 7.5 s)
    started = wait_for(lambda: arrival_of(provider, "B question"), timeout=10, what="B's reply to start")
    print(f"B started {started - submitted:.2f} s after its submission, behind A's burst of 30")
    assert started - submitted < 2
    # and all of A's replies complete, never more than two at once (three with B's)
    all_done(burst)
    assert provider.max_in_flight <= 3
    # (the last reply's place is handed on just after its record reads SUCCESS)
    wait_for(lambda: not ReplyAdmission.objects.exists(), timeout=10, what="no reply left in hand")


def test_a_higher_priority_reply_of_the_same_user_goes_first(two_workers, provider, alice):
    # given a user with six priority-0 replies in hand: two running (held at the provider until the
    # urgent one is sent, however slow the machine; then one ends, the other takes 3 s more, so one
    # place frees up), four waiting
    provider.script(answer("ok"), slow(3, answer("ok")))
    provider.default = answer("ok")
    provider.gate.clear()
    try:
        low = [send(alice, "user_p", f"conv_p_{n}", f"low {n}", priority=0) for n in range(6)]
        wait_for(lambda: len(provider.requests) == 2, what="the first two replies to reach the provider")

        # when it sends one at priority 9
        urgent = send(alice, "user_p", "conv_p_urgent", "urgent", priority=9)
    finally:
        provider.gate.set()

    # then the urgent one is the first to start once a place frees up (third to reach the provider)
    all_done([*low, urgent])
    order = [r.messages[-1]["content"] for r in provider.requests]
    assert order.index("urgent") == 2, order


def test_a_conversations_questions_are_answered_in_order_each_with_the_earlier_turns(two_workers, provider, alice):
    # given free workers and a provider that takes a moment per reply
    provider.script()
    provider.default = slow(0.2, answer("an answer"))

    # when five questions are sent to one conversation within a second
    questions = [f"question {n}" for n in range(1, 6)]
    sent = [send(alice, "user_o", "conv_ordered", question) for question in questions]

    # then they are answered in order, each prompt holding exactly the turns before its question
    all_done(sent)
    prompts = [[(m["role"], m["content"]) for m in r.messages if m["role"] != "system"] for r in provider.requests]
    assert [prompt[-1][1] for prompt in prompts] == questions
    for n, prompt in enumerate(prompts):
        earlier = [turn for question in questions[:n] for turn in (("user", question), ("assistant", "an answer"))]
        assert prompt == [*earlier, ("user", questions[n])]
    conversation = Conversation.objects.get(public_id="conv_ordered")
    assert conversation.title == "question 1"
    assert [m.content for m in conversation.messages.filter(role="user")] == questions


def test_no_waiting_reply_is_lost_when_a_worker_dies(alice, start_worker):
    # given two workers of their own, and a user with ten replies in hand (two at a time)
    provider = FakeLLM()
    provider.default = slow(0.5, answer("ok"))
    doomed, survivor = (
        start_worker(queues=[KILL_QUEUE], pool="threads", concurrency=2, env=provider_env(provider)) for _ in range(2)
    )
    sent = [send(alice, "user_k", f"conv_k_{n}", f"k {n}", queue=KILL_QUEUE) for n in range(10)]
    wait_for(lambda: len(provider.requests) >= 3, timeout=20, what="the replies to be under way")

    # when one worker is SIGKILLed (its replies in flight die with it) and the lifeline runs
    doomed.kill()

    def recovered() -> bool:
        rescue_orphaned_tasks(grace_seconds=0)  # what the periodic jobs do: the lifeline,
        sweep_waiting_replies()  # and the sweep of replies whose turn came
        return TaskRecord.objects.filter(task_id__in=sent, state=TaskState.SUCCESS).count() == len(sent)

    wait_for(recovered, timeout=60, interval=1, what="every reply to succeed after the crash")

    # then every reply completed, none lost, and nothing waits any more
    assert TaskRecord.objects.filter(task_id__in=sent, state=TaskState.SUCCESS).count() == 10
    wait_for(lambda: not ReplyAdmission.objects.exists(), timeout=10, what="no reply left in hand")
    assert survivor.process.poll() is None
    provider.stop()


def test_an_override_in_the_admin_changes_a_users_replies_at_once(alice, bob, redis_client):
    # given alice's chat users may have 3 replies in hand (bob's keep the default, 2)
    Budget.objects.create(scope=BudgetScope.CHAT_USER, tenant=alice, replies_at_once=3)

    # when each sends five replies (to a queue no worker reads: they stay in hand)
    alices = [send(alice, "user_x", f"conv_x_{n}", "q", queue=IDLE_QUEUE) for n in range(5)]
    bobs = [send(bob, "user_x", f"conv_x_{n}", "q", queue=IDLE_QUEUE) for n in range(5)]

    # then three of alice's were sent and two of bob's; the rest wait, saying why
    waiting = {"waiting: user_concurrency"}
    assert [r.error in waiting for r in TaskRecord.objects.filter(task_id__in=alices).order_by("created_at")] == [
        False,
        False,
        False,
        True,
        True,
    ]
    assert sum(r.error in waiting for r in TaskRecord.objects.filter(task_id__in=bobs)) == 3
    redis_client.delete(IDLE_QUEUE, *(f"{IDLE_QUEUE}:{n}" for n in range(10)))
