"""A loopback OpenAI-compatible Chat Completions server with scripted answers, for tests.

Workers (subprocesses) reach it at `base_url`; the test reads what it received in `requests`.

    llm.script(answer("hello", prompt_tokens=12, completion_tokens=3), error(429, "slow down", retry_after=1))

Replies are served in order; once the script is used up every request gets `llm.default`.

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

    def _next_reply(self, received: Received) -> Reply:
        with self._lock:
            self.requests.append(received)
            return self._script.pop(0) if self._script else self.default

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
                reply = fake._next_reply(received)
                if reply.delay and fake._stopping.wait(reply.delay):
                    return
                if received.body.get("stream") and reply.status == 200:
                    self._stream(reply)
                    return
                payload = json.dumps(reply.body).encode()
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

            def _stream(self, reply: Reply) -> None:
                body = reply.body
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
                    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                    if reply.usage:
                        chunks.append({**base, "choices": [], "usage": body["usage"]})
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
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
