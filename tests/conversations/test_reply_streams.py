"""The pieces of live replies, against real Redis and the loopback provider: the provider's stream,
and the Redis stream a reply is written to (coalesced, bounded, expiring)."""

import time

import pytest

from claw_ai import redis_clients
from conversations import reply_streams
from conversations.llm.base import ChatMessage, ProviderRateLimited, ProviderUnavailable
from conversations.llm.openai_compatible import OpenAICompatibleProvider, StreamError, _chunks
from conversations.reply_streams import ReplyStreamWriter, stream_key
from tasks_app.task_progress import partial_key, partial_text
from tests.support.fake_llm import FakeLLM, error, streamed

PROMPT = [ChatMessage("user", "hello")]


@pytest.fixture
def fake_server():
    server = FakeLLM()
    yield server
    server.stop()


@pytest.fixture
def provider(fake_server):
    provider = OpenAICompatibleProvider(
        base_url=fake_server.base_url, api_key="sk-test", model="gpt-4o-mini", timeout=5
    )
    yield provider
    provider.close()


def entries(task_id: str) -> list[reply_streams.StreamEvent]:
    return reply_streams.parse_entries(redis_clients.client().xrange(stream_key(task_id)))


def test_the_provider_streams_with_usage_requested(fake_server, provider):
    fake_server.script(streamed(["Hel", "lo", "!"], every=0.01, prompt_tokens=7, completion_tokens=3))
    pieces = []

    completion = provider.stream(PROMPT, temperature=0.5, on_text=pieces.append)

    assert pieces == ["Hel", "lo", "!"]
    assert (completion.text, completion.prompt_tokens, completion.completion_tokens) == ("Hello!", 7, 3)
    assert completion.tokens_estimated is False
    assert completion.finish_reason == "stop"
    body = fake_server.requests[0].body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_a_provider_without_usage_gets_estimated_tokens(fake_server, provider):
    fake_server.script(streamed(["Hello ", "there"], every=0.01, usage=False))

    completion = provider.stream(PROMPT, temperature=0.5, on_text=lambda piece: None)

    assert completion.tokens_estimated is True
    assert completion.prompt_tokens > 0
    assert completion.completion_tokens > 0


def test_errors_before_the_first_piece_are_as_before_and_a_cut_stream_is_unavailable(fake_server, provider):
    fake_server.script(error(429, "slow down", retry_after=2), streamed(["a", "b", "c"], cut_after=2))

    with pytest.raises(ProviderRateLimited) as limited:
        provider.stream(PROMPT, temperature=0.5, on_text=lambda piece: None)
    assert limited.value.retry_after == 2

    pieces = []
    with pytest.raises(ProviderUnavailable, match="before the reply was complete"):
        provider.stream(PROMPT, temperature=0.5, on_text=pieces.append)
    assert pieces == ["a", "b"]


def test_the_event_stream_is_read_as_server_sent_events_and_its_errors_are_told():
    # a comment, a chunk in two data lines, an empty event; what follows [DONE] is not read
    lines = [
        ": keep-alive",
        "",
        'data: {"choices":',
        'data: [{"delta": {"content": "Hi"}}]}',
        "",
        "",
        "data: [DONE]",
        "",
    ]
    assert list(_chunks([*lines, 'data: {"model": "late"}', ""])) == [{"choices": [{"delta": {"content": "Hi"}}]}]

    # an error event, an error chunk, and an event that is not JSON stop the reply with the provider's words
    for lines, message in [
        (["event: error", 'data: {"error": {"message": "overloaded"}}', ""], "overloaded"),
        (['data: {"error": {"message": "context too long"}}', ""], "context too long"),
        (["data: {not json", ""], "not JSON"),
    ]:
        with pytest.raises(StreamError, match=message):
            list(_chunks(lines))


def test_pieces_are_coalesced_and_the_text_so_far_is_readable(settings):
    # given a writer flushing at most every 50 ms
    settings.STREAM_FLUSH_MS = 50
    writer = ReplyStreamWriter("test-coalesce")
    redis_clients.client().delete(stream_key(writer.task_id), partial_key(writer.task_id))
    writer.start(attempt=1)

    # when 200 pieces arrive as fast as they can
    started = time.monotonic()
    for number in range(200):
        writer.text(f"{number} ")
    elapsed = time.monotonic() - started
    assert partial_text(task_id=writer.task_id) is not None
    writer.close()

    # then far fewer writes were made, and together they are the whole text
    events = entries(writer.task_id)
    deltas = [event for event in events if event.event == "delta"]
    assert len(deltas) <= elapsed / 0.05 + 2
    expected = "".join(f"{number} " for number in range(200))
    assert reply_streams.text_of(events) == expected == partial_text(task_id=writer.task_id)


def test_the_first_piece_is_written_at_once_even_inside_the_flush_window(settings):
    # given a writer with a long flush window, that has just written its STARTED entry
    settings.STREAM_FLUSH_MS = 60_000
    writer = ReplyStreamWriter("test-first-piece")
    redis_clients.client().delete(stream_key(writer.task_id), partial_key(writer.task_id))
    writer.start(attempt=1)

    # when the first two pieces arrive
    writer.text("Hello")
    writer.text(", world")

    # then the first is in the stream already, the second waits for the window (or the end)
    assert [(event.event, event.data) for event in entries(writer.task_id)] == [
        ("status", {"status": "STARTED"}),
        ("delta", {"text": "Hello"}),
    ]
    writer.close()
    assert reply_streams.text_of(entries(writer.task_id)) == "Hello, world"


def test_the_text_a_reader_was_sent_stops_at_its_last_event():
    events = [
        reply_streams.StreamEvent("5-0", "status", b'{"status": "STARTED"}'),
        reply_streams.StreamEvent("6-0", "delta", b'{"text": "Hel"}'),
        reply_streams.StreamEvent("6-1", "delta", b'{"text": "lo"}'),
        reply_streams.StreamEvent("7-0", "reset", b'{"attempt": 2}'),
        reply_streams.StreamEvent("8-0", "delta", b'{"text": "Hi"}'),
    ]
    assert reply_streams.text_sent(events, "0-0") == ""
    assert reply_streams.text_sent(events, "6-0") == "Hel"
    assert reply_streams.text_sent(events, "6-1") == "Hello"
    assert reply_streams.text_sent(events, "7-0") == ""
    assert reply_streams.text_sent(events, "9-0") == "Hi"


def test_the_stream_stays_within_its_bound_and_loses_nothing(settings):
    # given a bound of 20 entries and no coalescing
    settings.STREAM_FLUSH_MS = 0
    settings.STREAM_MAX_EVENTS = 20
    writer = ReplyStreamWriter("test-bound")
    redis_clients.client().delete(stream_key(writer.task_id))
    writer.start(attempt=1)

    # when 100 pieces come, and the reply is cancelled
    for number in range(100):
        writer.text(f"{number},")
    writer.cancelled()

    # then the stream kept within the bound, from its very first entry, and spells every piece
    events = entries(writer.task_id)
    assert len(events) <= 20
    assert events[0].data == {"status": "STARTED"}
    text = "".join(f"{number}," for number in range(100))
    assert reply_streams.text_of(events) == text
    assert events[-1].event == "cancelled"
    assert events[-1].data == {"task_id": writer.task_id, "partial": text}


def test_a_second_attempt_starts_with_a_reset_and_the_end_starts_the_retention(settings):
    settings.STREAM_FLUSH_MS = 0
    settings.STREAM_RETENTION_SECONDS = 600
    task_id = "test-attempts"
    redis_clients.client().delete(stream_key(task_id))
    first = ReplyStreamWriter(task_id)
    first.start(attempt=1)
    first.text("Once upon")
    first.close()
    reply_streams.mark_retrying(task_id)

    second = ReplyStreamWriter(task_id)
    second.start(attempt=2)
    second.text("Hello.")
    second.close()
    reply_streams.finish(task_id, reply_streams.DONE)

    names = [(event.event, event.data) for event in entries(task_id)]
    assert names == [
        ("status", {"status": "STARTED"}),
        ("delta", {"text": "Once upon"}),
        ("status", {"status": "RETRY"}),
        ("reset", {"attempt": 2}),
        ("status", {"status": "STARTED"}),
        ("delta", {"text": "Hello."}),
        ("done", {}),
    ]
    assert reply_streams.text_of(entries(task_id)) == "Hello." == partial_text(task_id=task_id)
    client = redis_clients.client()
    assert 0 < client.ttl(stream_key(task_id)) <= 600
    assert 0 < client.ttl(partial_key(task_id)) <= 600
