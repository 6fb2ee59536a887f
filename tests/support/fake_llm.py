"""A loopback OpenAI-compatible Chat Completions server with scripted answers, for tests.

Workers (subprocesses) reach it at `base_url`; the test reads what it received in `requests`.

    llm.script(answer("hello", prompt_tokens=12, completion_tokens=3), error(429, "slow down", retry_after=1))

Replies are served in order; once the script is used up every request gets `llm.default`.

Like a provider account it can enforce limits of its own, answering 429 past them:
`llm.limit(concurrent=5)` (calls in flight) and `llm.limit(requests=20, window=2)` (a sliding
window). It counts what it saw: `max_in_flight`, and `rate_limited` (429s it answered).

A request asking `stream: true` (as the provider always does) gets its reply as Server-Sent
Events chunks: `streamed(["Hel", "lo"], every=0.1)` sends one chunk per piece, `every` seconds
apart, then the usage chunk and `[DONE]`; a plain `answer()` is streamed as one piece.
`cut_after=n` ends the connection after n pieces (a provider failing mid-reply). The server
notes every stream whose client went away before the end in `closed_by_client` (with the time),
and `stream_started` is set at each stream's first chunk.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    status: int
    body: dict
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    pieces: list[str] | None = None  # streamed pieces (None: the message content as one)
    every: float = 0.0  # seconds between streamed pieces
    cut_after: int | None = None  # close the connection after this many pieces
    usage: bool = True  # send the usage chunk at the end of a stream


def answer(text: str, *, prompt_tokens: int = 10, completion_tokens: int = 5, model: str = "gpt-4o-mini") -> Reply:
    return Reply(
        200,
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        },
    )


def streamed(
    pieces: list[str],
    *,
    every: float = 0.05,
    prompt_tokens: int = 10,
    completion_tokens: int | None = None,
    model: str = "gpt-4o-mini",
    cut_after: int | None = None,
    usage: bool = True,
) -> Reply:
    reply = answer(
        "".join(pieces), prompt_tokens=prompt_tokens, completion_tokens=completion_tokens or len(pieces), model=model
    )
    return Reply(reply.status, reply.body, pieces=list(pieces), every=every, cut_after=cut_after, usage=usage)


def error(status: int, message: str, *, retry_after: float | None = None) -> Reply:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return Reply(status, {"error": {"message": message, "type": "fake_error", "code": str(status)}}, headers)


def slow(seconds: float, reply: Reply) -> Reply:
    return Reply(
        reply.status,
        reply.body,
        reply.headers,
        delay=seconds,
        pieces=reply.pieces,
        every=reply.every,
        cut_after=reply.cut_after,
        usage=reply.usage,
    )


def _capped(body: dict, max_tokens: int | None) -> dict:
    """An answer as a model asked for at most `max_tokens` would give it: no more completion tokens."""
    usage = body.get("usage")
    if not max_tokens or not usage or usage.get("completion_tokens", 0) <= max_tokens:
        return body
    capped = {**usage, "completion_tokens": max_tokens, "total_tokens": usage.get("prompt_tokens", 0) + max_tokens}
    choices = [{**choice, "finish_reason": "length"} for choice in body.get("choices", [])]
    return {**body, "usage": capped, "choices": choices}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict
    at: float

    @property
    def messages(self) -> list[dict]:
        return self.body.get("messages", [])


class FakeLLM:
    def __init__(self) -> None:
        self.default = answer("default fake answer")
        self.requests: list[Received] = []
        self.closed_by_client: list[float] = []  # time.monotonic() when a client left a stream early
        self.stream_started = threading.Event()
        self._script: list[Reply] = []
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.rate_limited = 0
        self.max_concurrent: int | None = None
        self.max_requests: tuple[int, float] | None = None
        self._accepted_at: list[float] = []
        self._stopping = threading.Event()
        # Closed (clear()), every call waits here before it answers, until set() opens it again:
        # a test holds the calls in flight while it does something that must happen meanwhile.
        self.gate = threading.Event()
        self.gate.set()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-llm", daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def script(self, *replies: Reply) -> None:
        """Forget earlier requests and script; serve `replies` next, in order."""
        with self._lock:
            self.requests.clear()
            self._script = list(replies)

    def limit(self, *, concurrent: int | None = None, requests: int | None = None, window: float = 60) -> None:
        """Answer 429 past `concurrent` calls in flight, or past `requests` within any `window` seconds."""
        with self._lock:
            self.max_concurrent = concurrent
            self.max_requests = (requests, window) if requests else None
            self._accepted_at.clear()
            self.max_in_flight = self.rate_limited = 0

    def _next_reply(self, received: Received) -> tuple[Reply, bool]:
        """The reply to send, and whether the call counts as in flight (it must be ended)."""
        with self._lock:
            self.requests.append(received)
            refusal = self._over_limit(received.at)
            if refusal is not None:
                self.rate_limited += 1
                return refusal, False
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return (self._script.pop(0) if self._script else self.default), True

    def _over_limit(self, now: float) -> Reply | None:
        if self.max_concurrent is not None and self.in_flight >= self.max_concurrent:
            return error(429, "too many requests in flight", retry_after=1)
        if self.max_requests is not None:
            count, window = self.max_requests
            self._accepted_at = [at for at in self._accepted_at if at > now - window]
            if len(self._accepted_at) >= count:
                return error(429, "rate limit reached", retry_after=round(self._accepted_at[0] + window - now, 3))
            self._accepted_at.append(now)
        return None

    def _call_ended(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):  # noqa: C901 (one fake provider: a branch per behaviour a test asks of it)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b"{}"
                received = Received(self.path, dict(self.headers), json.loads(raw or b"{}"), time.monotonic())
                reply, counted = fake._next_reply(received)
                fake.gate.wait(timeout=60)
                stopping = bool(reply.delay) and fake._stopping.wait(reply.delay)
                if counted:
                    # Ended before the answer leaves: the client may start its next call as soon
                    # as it reads this one, and that call must not find this one still counted.
                    fake._call_ended()
                if stopping:
                    return
                body = _capped(reply.body, received.body.get("max_tokens")) if reply.status == 200 else reply.body
                if received.body.get("stream") and reply.status == 200:
                    self._stream(reply, body)
                    return
                payload = json.dumps(body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test): nothing to answer

            def _stream(self, reply: Reply, body: dict) -> None:
                pieces = reply.pieces if reply.pieces is not None else [body["choices"][0]["message"]["content"]]
                base = {
                    "id": body["id"],
                    "object": "chat.completion.chunk",
                    "created": body["created"],
                    "model": body["model"],
                }
                chunks = [
                    {
                        **base,
                        "choices": [
                            {"index": 0, "delta": {"role": "assistant", "content": piece}, "finish_reason": None}
                        ],
                    }
                    for piece in pieces
                ]
                cut = reply.cut_after is not None
                if cut:
                    chunks = chunks[: reply.cut_after]
                else:
                    finish = body["choices"][0].get("finish_reason") or "stop"
                    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
                    if reply.usage:
                        chunks.append({**base, "choices": [], "usage": body["usage"]})
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    for index, chunk in enumerate(chunks):
                        if index and reply.every and self._client_left_within(reply.every):
                            fake.closed_by_client.append(time.monotonic())
                            return
                        if fake._stopping.is_set():
                            return
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                        fake.stream_started.set()
                    if not cut:
                        self.wfile.write(b"data: [DONE]\n\n")
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    fake.closed_by_client.append(time.monotonic())

            def _client_left_within(self, seconds: float) -> bool:
                """Wait `seconds`, noticing at once a client that closes the connection meanwhile."""
                readable, _, _ = select.select([self.connection], [], [], seconds)
                if not readable:
                    return False
                try:
                    return self.connection.recv(1, socket.MSG_PEEK) == b""
                except OSError:
                    return True

            def log_message(self, *args) -> None:
                pass

        return Handler
