"""A loopback OpenAI-compatible Chat Completions server that answers after a set latency.

    python -m bench.fake_llm_server --port 8901 --latency 1.0
    python -m bench.fake_llm_server --port 8901 --tokens-per-second 30 --seconds 10

Every POST to /v1/chat/completions waits `latency` seconds, then answers with a short reply
and token usage; asked for `"stream": true` (as the system's provider asks), it sends the same
reply as Server-Sent Events chunks, the usage in the last one. It serves many requests at once
(one thread each), so the measured throughput is the system's, not this server's.

With --tokens-per-second it writes a long reply instead, paced: `tokens_per_second x seconds`
tokens, each `t<n>@<send time> ` where the send time is time.time() when the chunk was written,
so a reader at the far end of the system sees how late each token reached it, and whether every
one arrived, in order (measurement 6, bench/streaming.py). Not streamed, the same tokens come
in one answer after the same time, stamped as they would have been sent.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def completion(model: str) -> dict:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "bench reply"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
    }


def stamped_token(number: int) -> str:
    return f"t{number}@{time.time():.6f} "


def chunk(model: str, *, content: str | None = None, finish: str | None = None, usage: dict | None = None) -> bytes:
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [] if usage else [{"index": 0, "delta": {} if content is None else {"content": content}}],
    }
    if usage:
        body["usage"] = usage
    elif finish:
        body["choices"][0]["finish_reason"] = finish
    return f"data: {json.dumps(body)}\n\n".encode()


class FakeLLMServer(ThreadingHTTPServer):
    daemon_threads = True
    # Hundreds of workers connect at once; the default backlog of 5 would drop connections.
    request_queue_size = 1024

    def __init__(
        self, port: int = 0, latency: float = 1.0, *, tokens_per_second: float = 0, seconds: float = 0
    ) -> None:
        self.latency = latency
        self.tokens_per_second = tokens_per_second
        self.tokens = round(tokens_per_second * seconds)
        self.served = 0
        self._count_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def start_in_thread(self) -> FakeLLMServer:
        threading.Thread(target=self.serve_forever, name="fake-llm", daemon=True).start()
        return self


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the OpenAI client expects
    server: FakeLLMServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            request = {}
        model = request.get("model", "bench-model")
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        if self.server.tokens:
            self._paced(model, stream=bool(request.get("stream")))
        else:
            time.sleep(self.server.latency)
            if request.get("stream"):
                self._stream(model, ["bench ", "reply"], completion(model)["usage"])
            else:
                self._send(200, completion(model))
        with self.server._count_lock:
            self.server.served += 1

    def _stream(self, model: str, pieces: list[str], usage: dict) -> None:
        """The pieces as chunks at once (the latency was waited before)."""
        self._start_stream()
        body = b"".join(chunk(model, content=piece) for piece in pieces)
        body += chunk(model, finish="stop") + chunk(model, usage=usage) + b"data: [DONE]\n\n"
        self.wfile.write(body)
        self.wfile.flush()

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        # No length and no chunked encoding: the end of the connection ends the answer.
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _paced(self, model: str, *, stream: bool) -> None:
        """`tokens` stamped tokens, one every 1/tokens_per_second s, on a fixed schedule (no drift)."""
        count, every = self.server.tokens, 1 / self.server.tokens_per_second
        usage = {"prompt_tokens": 20, "completion_tokens": count, "total_tokens": 20 + count}
        if stream:
            self._start_stream()
        started, tokens = time.monotonic(), []
        try:
            for number in range(count):
                time.sleep(max(0.0, started + number * every - time.monotonic()))
                token = stamped_token(number)
                if stream:
                    self.wfile.write(chunk(model, content=token))
                    self.wfile.flush()
                else:
                    tokens.append(token)
            if stream:
                self.wfile.write(chunk(model, finish="stop") + chunk(model, usage=usage) + b"data: [DONE]\n\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return  # the reader went away (a cancelled reply)
        if not stream:
            body = completion(model)
            body["choices"][0]["message"]["content"] = "".join(tokens)
            body["usage"] = usage
            self._send(200, body)

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
        pass  # thousands of requests: no access log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=1.0, help="seconds before each answer")
    parser.add_argument("--tokens-per-second", type=float, default=0, help="write a long reply at this pace")
    parser.add_argument("--seconds", type=float, default=10, help="... for this long")
    args = parser.parse_args()
    server = FakeLLMServer(args.port, args.latency, tokens_per_second=args.tokens_per_second, seconds=args.seconds)
    pace = f"{server.tokens} tokens at {args.tokens_per_second:g}/s" if server.tokens else f"after {args.latency}s"
    print(f"fake LLM at {server.base_url} answering {pace}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
