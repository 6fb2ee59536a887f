"""GET /api/v1/tasks/stream/{task_id} in the OpenAPI schema.

The stream is a plain async Django view (conversations.api.streaming), not a DRF view, so
drf-spectacular does not find it: this postprocessing hook (SPECTACULAR_SETTINGS) adds it, with
its events described, beside the endpoints it goes with.
"""

from __future__ import annotations

PATH = "/api/v1/tasks/stream/{task_id}/"

EVENTS = """Server-Sent Events (`text/event-stream`), each with an `id:` that orders them:

- `status` — `{"status": "PENDING" | "STARTED" | "RETRY"}` whenever it changes (the first event is the current one);
- `delta` — `{"text": "..."}`, the next piece of the reply;
- `reset` — `{"attempt": n}`, the reply starts over (a retry after some text had been sent): drop the text so far;
- `done` — the task's `/status` document (result with response, tokens, cost); then the server closes;
- `error` — the `/status` document of the failed task; then the server closes;
- `cancelled` — `{"task_id": "...", "partial": "..."}`; then the server closes.

A comment line (`: keep-alive`) every 15 s keeps proxies from closing an idle stream. Reconnect with
`Last-Event-ID` (or `?last_event_id=`) to receive exactly the events after it."""


def _error(description: str) -> dict:
    schema = {"$ref": "#/components/schemas/Error"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def add_reply_stream(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook: the stream endpoint's operation."""
    result.setdefault("paths", {})[PATH] = {
        "get": {
            "operationId": "v1_tasks_stream_retrieve",
            "summary": "Watch an AI reply being written (Server-Sent Events)",
            "description": EVENTS,
            "tags": ["v1"],
            "security": [{"tokenAuth": []}, {"cookieAuth": []}],
            "parameters": [
                {"in": "path", "name": "task_id", "required": True, "schema": {"type": "string"}},
                {
                    "in": "header",
                    "name": "Last-Event-ID",
                    "required": False,
                    "schema": {"type": "string", "pattern": r"^\d+-\d+$"},
                    "description": "Resume after this event id (the `id:` of the last event received).",
                },
                {
                    "in": "query",
                    "name": "last_event_id",
                    "required": False,
                    "schema": {"type": "string", "pattern": r"^\d+-\d+$"},
                    "description": "The same, for clients that cannot set a header (EventSource on a new URL).",
                },
            ],
            "responses": {
                "200": {
                    "description": "The event stream.",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                "204": {"description": "The Last-Event-ID given was the stream's final event: nothing follows."},
                "400": _error("Not an AI reply task, or a malformed Last-Event-ID."),
                "401": _error("Not authenticated."),
                "404": _error("No such task (or not yours)."),
                "503": _error("The stream store (Redis) is unreachable."),
            },
        }
    }
    result["paths"] = dict(sorted(result["paths"].items()))
    return result
