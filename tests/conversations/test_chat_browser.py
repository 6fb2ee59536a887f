"""/chat/ in headless Chromium: a reply streams into the page word by word, and Stop stops it.

Everything is real: uvicorn serves the page and the API (as `make run` does, ASGI), a threads
worker runs the offline provider slowed down to LLM_OFFLINE_STREAM_DELAY_MS between words, and the
browser talks to both only through the page's own script. Screenshots go to the tests' log dir.
"""

import pytest
from django.conf import settings
from django.test import Client

from claw_ai.celery import celery_app
from conversations.models import Conversation, Message
from tests.support.waiting import wait_for
from tests.support.workers import LOG_DIR
from tests.tasks_app.admin.browser import Browser, find_chromium

CHROMIUM = find_chromium()
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.e2e,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no chromium on this machine (Debian: apt-get install chromium): /chat/ was not checked in a browser",
    ),
]

# The offline reply is ~30 words: at 250 ms a word it takes ~8 s to write, long enough to look mid-reply.
WORD_DELAY_MS = "250"
LAST_REPLY = "[...document.querySelectorAll('#messages .message.assistant')].at(-1)"


@pytest.fixture
def slow_worker(start_worker):
    """The only worker on the AI queue for this test: offline provider, a pause between words.

    /ai/generate sends to ai_high_priority; a session-wide worker of this test process (instant
    replies) would race for the task, so it stops consuming that queue for the test's length.
    """
    worker = start_worker(
        queues=[settings.QUEUE_AI], pool="threads", concurrency=4, env={"LLM_OFFLINE_STREAM_DELAY_MS": WORD_DELAY_MS}
    )
    others = [
        name
        for name, queues in (celery_app.control.inspect(timeout=1).active_queues() or {}).items()
        if name != worker.name and any(queue["name"] == settings.QUEUE_AI for queue in queues)
    ]
    for name in others:
        celery_app.control.cancel_consumer(settings.QUEUE_AI, destination=[name], reply=True)
    yield worker
    for name in others:
        celery_app.control.add_consumer(settings.QUEUE_AI, destination=[name], reply=True)


@pytest.fixture
def browser():
    opened = Browser(CHROMIUM)
    yield opened
    opened.close()


def signed_in(browser: Browser, server_url: str, user) -> None:
    client = Client()
    client.force_login(user)
    browser.set_cookie(url=server_url, name="sessionid", value=client.cookies["sessionid"].value)


def page_state(browser: Browser) -> dict:
    """What the person sees of the last reply."""
    return browser.evaluate(
        f"""(() => {{
            const reply = {LAST_REPLY};
            if (!reply) return {{}};
            const figure = (name) => reply.querySelector('.figure.' + name + ' code')?.textContent ?? null;
            return {{
                text: reply.querySelector('.text').textContent,
                writing: reply.classList.contains('writing'),
                cancelled: reply.classList.contains('cancelled'),
                task_id: figure('task-id'), status: figure('status'), tokens: figure('tokens'),
                cost: figure('cost'), first_token: figure('first-token'),
                stop_shown: !document.getElementById('stop').hidden,
                notice: document.getElementById('notice').textContent,
            }};
        }})()"""
    )


def send_message(browser: Browser, text: str) -> None:
    """Type into the box and press Send, as a person does (real input events)."""
    browser.evaluate("document.getElementById('message').focus()")
    browser.call("Input.insertText", session=True, text=text)
    browser.evaluate("document.getElementById('send').click()")


def screenshot(browser: Browser, name: str) -> None:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    assert len(browser.screenshot(LOG_DIR / name)) > 10_000


def test_a_reply_streams_into_the_page_and_ends_with_its_figures(web_server, slow_worker, browser, alice, bob):
    # given alice's earlier conversation, and one of bob's she must not see
    Conversation.objects.create(public_id="conv_earlier", user_id="alice", title="Earlier chat", created_by=alice)
    Conversation.objects.create(public_id="conv_bobs", user_id="bob", title="Bob's secret chat", created_by=bob)
    url = f"http://127.0.0.1:{web_server.port}"
    signed_in(browser, url, alice)

    # when she opens the page
    browser.open(f"{url}/chat/")

    # then it lists her conversation only
    names = wait_for(
        lambda: browser.evaluate("[...document.querySelectorAll('#conversations .name')].map(n => n.textContent)"),
        timeout=15,
        what="the conversation list",
    )
    assert names == ["Earlier chat"]

    # when she picks it and sends a message
    browser.evaluate("document.querySelector('#conversations button').click()")
    wait_for(
        lambda: browser.evaluate("document.getElementById('conversation-title').textContent") == "Earlier chat",
        timeout=15,
        what="the conversation to open",
    )
    send_message(browser, "How do live replies work?")

    # then part of the reply shows while it is still being written, with a Stop button
    midway = wait_for(
        lambda: (state := page_state(browser)).get("writing") and len(state["text"].split()) >= 4 and state,
        timeout=30,
        what="the first words of the reply in the page",
    )
    screenshot(browser, "chat-mid-reply.png")
    assert midway["stop_shown"]
    assert midway["status"] == "STARTED"

    # and in the end the whole reply, with its task id, status, tokens, cost and time to first token
    final = wait_for(
        lambda: (state := page_state(browser)).get("status") == "SUCCESS" and not state["writing"] and state,
        timeout=60,
        what="the reply to finish in the page",
    )
    screenshot(browser, "chat-final-reply.png")
    saved = Message.objects.get(conversation__public_id="conv_earlier", role="assistant")
    assert final["text"] == saved.content
    assert "How do live replies work?" in saved.content
    assert saved.content.startswith(midway["text"])
    assert len(midway["text"]) < len(saved.content)
    assert final["task_id"] == saved.task_id
    assert final["tokens"] == f"{saved.total_tokens} = {saved.prompt_tokens} + {saved.completion_tokens} (estimated)"
    assert final["cost"] == f"${saved.cost:.6f}"
    assert final["first_token"] == f"{saved.time_to_first_token_ms} ms"
    assert not final["stop_shown"]

    # and reopening the conversation shows the saved exchange with the same figures (from /status)
    browser.open(f"{url}/chat/")
    wait_for(lambda: browser.evaluate("document.querySelector('#conversations button') !== null"), timeout=15)
    browser.evaluate("document.querySelector('#conversations button').click()")
    reopened = wait_for(
        lambda: (state := page_state(browser)).get("first_token") and state, timeout=15, what="the saved reply"
    )
    assert {key: reopened[key] for key in ("text", "task_id", "status", "tokens", "cost", "first_token")} == {
        key: final[key] for key in ("text", "task_id", "status", "tokens", "cost", "first_token")
    }


def test_stop_cancels_the_reply_being_written(web_server, slow_worker, browser, alice):
    # given alice writing in a new conversation, the reply under way
    url = f"http://127.0.0.1:{web_server.port}"
    signed_in(browser, url, alice)
    browser.open(f"{url}/chat/")
    wait_for(lambda: browser.evaluate("document.getElementById('send').disabled === false"), timeout=15)
    send_message(browser, "Tell me a long story")
    wait_for(
        lambda: (state := page_state(browser)).get("writing") and len(state["text"].split()) >= 3,
        timeout=30,
        what="the reply to start in the page",
    )

    # when she presses Stop
    browser.evaluate("document.getElementById('stop').click()")

    # then the stream ends with `cancelled`: the page keeps the words written so far, marked stopped
    stopped = wait_for(
        lambda: (state := page_state(browser)).get("cancelled") and state, timeout=30, what="the reply to stop"
    )
    screenshot(browser, "chat-stopped.png")
    assert stopped["status"] == "REVOKED"
    assert not stopped["writing"]
    assert not stopped["stop_shown"]
    assert stopped["text"]
    # and the conversation the first message started is hers, titled by that message
    conversation = Conversation.objects.get(created_by=alice)
    assert (conversation.user_id, conversation.title) == ("alice", "Tell me a long story")
    wait_for(
        lambda: (
            browser.evaluate("document.querySelector('#conversations .current .name')?.textContent")
            == conversation.title
        ),
        timeout=15,
        what="the new conversation, current, in the list",
    )
    # and the reply saved is the partial text the page shows, marked cancelled, not the whole answer
    saved = wait_for(
        lambda: Message.objects.filter(task_id=stopped["task_id"], role="assistant").first(),
        timeout=15,
        what="the partial reply to be saved",
    )
    assert saved.finish_reason == "cancelled"
    assert saved.content == stopped["text"]
    assert "(No language model is configured" not in saved.content
