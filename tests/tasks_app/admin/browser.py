"""A headless Chromium driven over the DevTools protocol on a pipe (no extra packages, no network).

Debian's chromium reads DevTools commands from fd 3 and answers on fd 4 when started
with --remote-debugging-pipe; messages are JSON, each ended by a NUL byte.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.processes import TestProcess

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
    "--remote-debugging-pipe",
)


def find_chromium() -> str | None:
    for candidate in CHROMIUM_CANDIDATES:
        path = shutil.which(candidate)
        if path:
            return path
    return None


class Browser:
    def __init__(self, executable: str) -> None:
        self.profile = tempfile.TemporaryDirectory(prefix="claw-chromium-")
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()

        # bash moves the pipe ends to fds 3 and 4 (not a dup2 in a preexec_fn: the test process has
        # threads), through fresh fds of its own so that neither end can be overwritten on the way.
        self.launched = TestProcess(
            [
                "bash",
                "-c",
                f'exec {{a}}<&{commands_read} {{b}}>&{replies_write}; exec "$0" "$@" 3<&$a 4>&$b {{a}}<&- {{b}}>&-',
                executable,
                *FLAGS,
                f"--user-data-dir={self.profile.name}",
                "about:blank",
            ],
            name=f"chromium-{Path(self.profile.name).name}",
            env=dict(os.environ),
            pass_fds=(commands_read, replies_write),
        )
        self.process = self.launched.process
        os.close(commands_read)
        os.close(replies_write)
        self._next_id = 0
        self._buffer = b""
        self.events: list[dict] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable", session=True)

    def call(self, method: str, *, session: bool = False, timeout: float = 30, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read(timeout)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _read(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._replies, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def set_cookie(self, *, url: str, name: str, value: str) -> None:
        self.call("Network.setCookie", session=True, url=url, name=name, value=value)

    def open(self, url: str, timeout: float = 30) -> None:
        self.events.clear()
        self.call("Page.navigate", session=True, url=url)
        deadline = time.monotonic() + timeout
        while not any(event.get("method") == "Page.loadEventFired" for event in self.events):
            self.events.append(self._read(max(deadline - time.monotonic(), 0.01)))

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        return result["result"].get("value")

    def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode(self.call("Page.captureScreenshot", session=True, format="png")["data"])
        path.write_bytes(data)
        return data

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close", timeout=5)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        self.launched.stop(5)  # what is left of the group, if Chromium did not close
        os.close(self._commands)
        os.close(self._replies)
        self.profile.cleanup()
