"""A loopback OpenAI-compatible Chat Completions server that answers after a set latency.

    python -m bench.fake_llm_server --port 8901 --latency 1.0

Every POST to /v1/chat/completions waits `latency` seconds, then answers with a short reply
and token usage. It serves many requests at once (one thread each), so the measured
throughput is the system's, not this server's.
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


class FakeLLMServer(ThreadingHTTPServer):
    daemon_threads = True
    # Hundreds of workers connect at once; the default backlog of 5 would drop connections.
    request_queue_size = 1024

    def __init__(self, port: int = 0, latency: float = 1.0) -> None:
        self.latency = latency
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

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        try:
            model = json.loads(self.rfile.read(length) or b"{}").get("model", "bench-model")
        except ValueError:
            model = "bench-model"
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        time.sleep(self.server.latency)
        with self.server._count_lock:
            self.server.served += 1
        self._send(200, completion(model))

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
    args = parser.parse_args()
    server = FakeLLMServer(args.port, args.latency)
    print(f"fake LLM at {server.base_url} answering after {args.latency}s", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
