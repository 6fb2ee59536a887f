"""A loopback OpenAI-compatible Chat Completions server with scripted answers, for tests.

Workers (subprocesses) reach it at `base_url`; the test reads what it received in `requests`.

    llm.script(answer("hello", prompt_tokens=12, completion_tokens=3), error(429, "slow down", retry_after=1))

Replies are served in order; once the script is used up every request gets `llm.default`.

Like a provider account it can enforce limits of its own, answering 429 past them:
`llm.limit(concurrent=5)` (calls in flight) and `llm.limit(requests=20, window=2)` (a sliding
window). It counts what it saw: `max_in_flight`, and `rate_limited` (429s it answered).
"""

from __future__ import annotations

import json
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


def error(status: int, message: str, *, retry_after: float | None = None) -> Reply:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return Reply(status, {"error": {"message": message, "type": "fake_error", "code": str(status)}}, headers)


def slow(seconds: float, reply: Reply) -> Reply:
    return Reply(reply.status, reply.body, reply.headers, delay=seconds)


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
        self._script: list[Reply] = []
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.rate_limited = 0
        self.max_concurrent: int | None = None
        self.max_requests: tuple[int, float] | None = None
        self._accepted_at: list[float] = []
        self._stopping = threading.Event()
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

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b"{}"
                received = Received(self.path, dict(self.headers), json.loads(raw or b"{}"), time.monotonic())
                reply, counted = fake._next_reply(received)
                stopping = bool(reply.delay) and fake._stopping.wait(reply.delay)
                if counted:
                    # Ended before the answer leaves: the client may start its next call as soon
                    # as it reads this one, and that call must not find this one still counted.
                    fake._call_ended()
                if stopping:
                    return
                payload = json.dumps(_capped(reply.body, received.body.get("max_tokens"))).encode()
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

            def log_message(self, *args) -> None:
                pass

        return Handler
