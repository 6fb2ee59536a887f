"""Keep one process of `make run` running: start it again when it exits on its own.

    python -m devtools.respawn celery -A claw_ai worker ...      (the Procfile's worker lines)

honcho, which runs the Procfile, stops every process as soon as one exits. That is right for a
crash at start-up, wrong for a worker that exits on purpose so that its supervisor starts it again
(a worker whose consumer is stuck: tasks_app.liveness; compose's restart policy does this in a
deploy). So the worker lines run under this: when the command exits while nobody asked it to stop, it is
started again after a short pause. SIGTERM and SIGHUP are passed on (SIGINT, Ctrl-C, reaches the
command from the terminal itself), and then the command's end is the end. A command that keeps
failing fast (RESPAWN_GIVE_UP_AFTER exits in a row, each within RESPAWN_FAST_EXIT_SECONDS of its
start: a broken setting, say) is not started again: its exit code is returned, and honcho stops
the rest, as before.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

PAUSE_SECONDS = float(os.environ.get("RESPAWN_PAUSE_SECONDS", "1"))
FAST_EXIT_SECONDS = float(os.environ.get("RESPAWN_FAST_EXIT_SECONDS", "10"))
GIVE_UP_AFTER = int(os.environ.get("RESPAWN_GIVE_UP_AFTER", "3"))


def say(message: str) -> None:
    print(f"respawn: {message}", file=sys.stderr, flush=True)


def main(command: list[str]) -> int:
    if not command:
        say("usage: python -m devtools.respawn COMMAND [ARGS...]")
        return 2
    stopping: list[int] = []
    child: subprocess.Popen | None = None

    def forward(signum, _frame) -> None:
        stopping.append(signum)
        # Ctrl-C reaches every process of the terminal's foreground group, the command included: a
        # second SIGINT would turn Celery's warm shutdown into a cold one. SIGTERM is idempotent.
        if signum != signal.SIGINT and child is not None and child.poll() is None:
            child.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    fast_exits = 0
    while True:
        started = time.monotonic()
        child = subprocess.Popen(command)
        if stopping and stopping[-1] != signal.SIGINT:  # asked to stop as it was being started
            child.send_signal(stopping[-1])
        code = child.wait()
        code = 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell says
        if stopping:
            return code
        fast_exits = fast_exits + 1 if time.monotonic() - started < FAST_EXIT_SECONDS else 0
        if fast_exits >= GIVE_UP_AFTER:
            say(
                f"{command[0]} exited {fast_exits} times in a row within {FAST_EXIT_SECONDS:g} s of starting "
                f"(last exit code {code}): not starting it again"
            )
            return code or 1
        say(f"{command[0]} exited with code {code} on its own: starting it again")
        time.sleep(PAUSE_SECONDS)
        if stopping:  # asked to stop while nothing ran
            return 128 + stopping[0]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
