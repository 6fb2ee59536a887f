"""A small Server-Sent Events client for tests: one connection, read event by event, closable mid-stream."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    id: str
    event: str
    data: dict


class EventStream:
    """GET `path` on 127.0.0.1:`port`; `status`, `headers` and `body` (for a non-stream answer) at once."""

    def __init__(
        self,
        port: int,
        path: str,
        *,
        token: str | None = None,
        last_event_id: str | None = None,
        cookie: str | None = None,
        timeout: float = 30,
    ) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        headers = {"Accept": "text/event-stream"}
        if token:
            headers["Authorization"] = f"Token {token}"
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        if cookie:
            headers["Cookie"] = cookie
        self.connection.request("GET", path, headers=headers)
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.headers = {name.lower(): value for name, value in self.response.getheaders()}
        self.comments: list[str] = []
        self.body = None
        if not self.headers.get("content-type", "").startswith("text/event-stream"):
            raw = self.response.read()
            self.body = json.loads(raw) if raw else None

    def next_event(self) -> Event | None:
        """The next event (comments are kept in `comments`); None when the server ended the stream."""
        fields: dict[str, str] = {}
        while True:
            line = self.response.readline()
            if not line:
                return None
            line = line.decode().rstrip("\n")
            if not line:
                if fields:
                    return Event(fields.get("id", ""), fields.get("event", "message"), json.loads(fields["data"]))
                continue
            if line.startswith(":"):
                self.comments.append(line)
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")

    def events_until(self, predicate) -> list[Event]:
        """Events up to and including the first for which predicate(event) is true (or the stream's end)."""
        events = []
        while (event := self.next_event()) is not None:
            events.append(event)
            if predicate(event):
                break
        return events

    def read_all(self) -> list[Event]:
        return self.events_until(lambda event: False)

    def close(self) -> None:
        """Go away mid-stream, as a closed browser tab does."""
        sock = self.connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.connection.close()


def reply_text(events: list[Event]) -> str:
    """The reply the events spell: the delta texts after the last reset."""
    pieces: list[str] = []
    for event in events:
        if event.event == "reset":
            pieces.clear()
        elif event.event == "delta":
            pieces.append(event.data["text"])
    return "".join(pieces)
