"""generate_ai_response on a real worker, against a loopback OpenAI-compatible server."""

import json
import uuid
from decimal import Decimal

import pytest
from django_celery_results.models import TaskResult
from rest_framework.test import APIClient

from conversations.models import Conversation, Message
from tasks_app.models import TaskRecord, TaskState
from tasks_app.tasks.ai_tasks import generate_ai_response
from tests.conversations.conftest import LLM_TEST_QUEUE, LLM_TEST_TIMEOUT
from tests.support.fake_llm import answer, error, slow
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def send(conversation_id: str, message: str, **options):
    kwargs = {"conversation_id": conversation_id, "user_message": message, "user_id": "user_456"}
    kwargs.update(options.pop("kwargs", {}))
    return generate_ai_response.apply_async(kwargs=kwargs, queue=LLM_TEST_QUEUE, **options)


def finished(task_id: str, timeout: float = 30) -> TaskRecord:
    return wait_for(
        lambda: TaskRecord.objects.filter(task_id=task_id, state__in=["SUCCESS", "FAILURE"]).first(),
        timeout=timeout,
        what=f"task {task_id} to finish",
    )


def stored_result(task_id: str) -> dict:
    return json.loads(TaskResult.objects.get(task_id=task_id).result)


def test_plain_answer_with_usage_and_cost(llm_worker, fake_llm):
    # given a provider that answers with a usage report, under a dated model name
    fake_llm.script(
        answer("Hello from the model", prompt_tokens=1200, completion_tokens=300, model="gpt-4o-mini-2024-07-18")
    )

    # when a reply is generated at a chosen temperature
    sent = send("conv_plain", "你好", kwargs={"temperature": 0.2})

    # then the result carries the provider's answer, tokens and the cost from the price table
    assert finished(sent.id).state == TaskState.SUCCESS
    result = stored_result(sent.id)
    assert result["conversation_id"] == "conv_plain"
    assert result["response"] == "Hello from the model"
    assert result["tokens"] == {"prompt": 1200, "completion": 300, "total": 1500}
    # gpt-4o-mini: 0.00015 / 1K prompt + 0.0006 / 1K completion
    assert result["cost"] == pytest.approx(0.00018 + 0.00018)
    assert result["model"] == "gpt-4o-mini-2024-07-18"
    # and the provider got the configured model, the temperature and the user's message last
    sent_body = fake_llm.requests[0].body
    assert sent_body["model"] == "gpt-4o-mini"
    assert sent_body["temperature"] == 0.2
    assert sent_body["messages"][-1] == {"role": "user", "content": "你好"}
    # and both messages are saved, the reply with its task, tokens and cost
    conversation = Conversation.objects.get(public_id="conv_plain")
    user_message, reply = conversation.messages.all()
    assert (user_message.role, user_message.content) == ("user", "你好")
    assert (reply.role, reply.task_id, reply.completion_tokens) == ("assistant", sent.id, 300)
    assert reply.cost == Decimal("0.000360")


def test_history_is_sent_with_the_next_question(llm_worker, fake_llm):
    # given a conversation with one exchange
    fake_llm.script(answer("Paris."), answer("About 2.1 million."))
    finished(send("conv_history", "What is the capital of France?").id)

    # when the user asks a follow-up
    finished(send("conv_history", "How many people live there?").id)

    # then the second prompt carried the first exchange before the new question
    roles_and_texts = [(m["role"], m["content"]) for m in fake_llm.requests[1].messages if m["role"] != "system"]
    assert roles_and_texts == [
        ("user", "What is the capital of France?"),
        ("assistant", "Paris."),
        ("user", "How many people live there?"),
    ]


def test_rate_limited_answer_is_retried_after_retry_after(llm_worker, fake_llm):
    # given a provider that first answers 429 with Retry-After: 2
    fake_llm.script(error(429, "Rate limit reached", retry_after=2), answer("after the wait"))

    # when a reply is generated
    sent = send("conv_429", "hi")

    # then the task retried once, no sooner than the provider asked, and succeeded
    record = finished(sent.id)
    assert record.state == TaskState.SUCCESS
    assert record.retries == 1
    assert stored_result(sent.id)["response"] == "after the wait"
    first, second = fake_llm.requests
    assert second.at - first.at >= 1.9


def test_rate_limited_answer_without_retry_after_is_retried_with_backoff(llm_worker, fake_llm):
    # given a provider that answers 429 without saying how long to wait
    fake_llm.script(error(429, "Rate limit reached"), answer("after backing off"))

    # when a reply is generated
    sent = send("conv_429_backoff", "hi")

    # then the task backed off, retried and succeeded
    record = finished(sent.id)
    assert (record.state, record.retries) == (TaskState.SUCCESS, 1)
    assert stored_result(sent.id)["response"] == "after backing off"


def test_server_error_then_success_is_retried_with_backoff(llm_worker, fake_llm):
    # given a provider that fails with 500 once
    fake_llm.script(error(500, "upstream exploded"), answer("recovered"))

    # when a reply is generated
    sent = send("conv_500", "hi")

    # then the task retried and succeeded, with one reply saved
    record = finished(sent.id)
    assert (record.state, record.retries) == (TaskState.SUCCESS, 1)
    assert stored_result(sent.id)["response"] == "recovered"
    assert Message.objects.filter(conversation__public_id="conv_500", role="assistant").count() == 1


def test_a_timeout_is_retried(llm_worker, fake_llm):
    # given a provider whose first answer comes after the worker's LLM_TIMEOUT
    fake_llm.script(slow(LLM_TEST_TIMEOUT + 2, answer("too late")), answer("in time"))

    # when a reply is generated
    sent = send("conv_timeout", "hi")

    # then the timed-out request was retried and the second answer saved
    record = finished(sent.id)
    assert (record.state, record.retries) == (TaskState.SUCCESS, 1)
    assert stored_result(sent.id)["response"] == "in time"
    assert list(Message.objects.filter(conversation__public_id="conv_timeout").values_list("content", flat=True)) == [
        "hi",
        "in time",
    ]


def test_a_client_error_fails_at_once_with_the_providers_message(llm_worker, fake_llm):
    # given a provider that rejects the request
    fake_llm.script(error(400, "The model `gpt-9` does not exist"))

    # when a reply is generated
    sent = send("conv_400", "hi")

    # then the task failed without retrying, and its error quotes the provider
    record = finished(sent.id)
    assert record.state == TaskState.FAILURE
    assert record.retries == 0
    assert "The model `gpt-9` does not exist" in record.error
    assert "ProviderRejected" in record.error
    assert len(fake_llm.requests) == 1
    assert not Message.objects.filter(conversation__public_id="conv_400", role="assistant").exists()


def test_the_soft_time_limit_ends_the_task_with_a_clear_error(llm_worker, fake_llm):
    # given a provider slower than the task's soft time limit (but within LLM_TIMEOUT)
    fake_llm.script(slow(LLM_TEST_TIMEOUT - 0.5, answer("too late")))

    # when a reply is generated with a 1 s soft limit
    sent = send("conv_soft_limit", "hi", soft_time_limit=1, time_limit=30)

    # then it fails cleanly, saying why, and saves no reply
    record = finished(sent.id)
    assert record.state == TaskState.FAILURE
    assert "AIGenerationTimeout" in record.error
    assert "soft time limit" in record.error
    assert not Message.objects.filter(conversation__public_id="conv_soft_limit", role="assistant").exists()


def test_a_task_cancelled_while_waiting_on_the_provider_stops(llm_worker, fake_llm):
    # given a task waiting on a slow provider (the worker runs one task at a time)
    fake_llm.script(slow(LLM_TEST_TIMEOUT + 5, answer("never used")), answer("next one"))
    waiting = send("conv_cancel", "a slow question")
    wait_for(lambda: len(fake_llm.requests) == 1, what="the provider to receive the request")

    # when the task is cancelled and the revoke broadcast never reaches the worker
    # (only the record says REVOKED, as after a lost broadcast or on a pool that cannot terminate)
    TaskRecord.objects.filter(task_id=waiting.id).update(state=TaskState.REVOKED)
    following = send("conv_cancel_next", "next")

    # then the worker gave up the wait at once: the next task reached the provider well before
    # the slow request could have timed out, and the cancelled task saved no reply
    assert finished(following.id).state == TaskState.SUCCESS
    first, second = fake_llm.requests
    assert second.at - first.at < LLM_TEST_TIMEOUT
    assert TaskRecord.objects.get(task_id=waiting.id).state == TaskState.REVOKED
    assert not Message.objects.filter(task_id=waiting.id, role="assistant").exists()


def test_the_same_message_delivered_twice_saves_one_reply(llm_worker, fake_llm):
    # given a task that already ran (as when a worker died after saving, before acknowledging)
    fake_llm.script(answer("the only answer"))
    task_id = str(uuid.uuid4())
    send("conv_twice", "hello", task_id=task_id)
    finished(task_id)

    # when the same message is delivered again, followed by another task on the same queue
    send("conv_twice", "hello", task_id=task_id)
    marker = send("conv_twice_marker", "marker")
    finished(marker.id)

    # then the conversation holds one user message and one reply, and the provider was asked once
    contents = list(Message.objects.filter(conversation__public_id="conv_twice").values_list("role", "content"))
    assert contents == [("user", "hello"), ("assistant", "the only answer")]
    asked = [r for r in fake_llm.requests if r.messages[-1]["content"] == "hello"]
    assert len(asked) == 1
    assert stored_result(task_id)["response"] == "the only answer"


def test_retrying_a_failed_reply_asks_the_same_question_once(llm_worker, fake_llm, staff_user):
    # given a reply that failed for good (the provider refused it) after its question was saved,
    # and a retry of it through the API that failed the same way
    fake_llm.script(error(400, "context too long"), error(400, "context too long"), answer("third time lucky"))
    staff = APIClient()
    staff.force_authenticate(staff_user)
    failed = send("conv_retry", "what is 2 + 2?").id
    assert finished(failed).state == TaskState.FAILURE
    first_retry = staff.post(f"/api/v1/tasks/retry/{failed}").json()["task_id"]
    assert finished(first_retry).state == TaskState.FAILURE

    # when the retry is retried, and succeeds
    second_retry = staff.post(f"/api/v1/tasks/retry/{first_retry}").json()["task_id"]
    assert finished(second_retry).state == TaskState.SUCCESS

    # then the conversation shows the question once (saved by the first task), answered by the last
    messages = Message.objects.filter(conversation__public_id="conv_retry").order_by("created_at", "id")
    assert [(m.role, m.content, m.task_id) for m in messages] == [
        ("user", "what is 2 + 2?", failed),
        ("assistant", "third time lucky", second_retry),
    ]
    # and every attempt asked the provider the question once
    assert len(fake_llm.requests) == 3
    for request in fake_llm.requests:
        assert [m["content"] for m in request.messages if m["role"] == "user"] == ["what is 2 + 2?"]
