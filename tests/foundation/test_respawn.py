"""make run's workers are started again when they exit on their own (devtools/respawn.py).

honcho stops every process of the Procfile when one exits; a worker that exits on purpose for its
supervisor to start it again (a stuck consumer, tasks_app.liveness) would end the whole `make run`.
"""

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
WORKER_LINES = ("worker1", "worker2", "background")


def respawn(command: str, starts: Path, *, prepare: str = "pass", **environment: str) -> subprocess.Popen:
    """devtools.respawn running `python -c "prepare; command"`, which notes each start in `starts`
    once prepared."""
    code = f"{prepare}; open({str(starts)!r}, 'a').write('start\\n'); {command}"
    env = {"PATH": "/usr/bin:/bin", "RESPAWN_PAUSE_SECONDS": "0.05", **environment}
    return subprocess.Popen(
        [sys.executable, "-m", "devtools.respawn", sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )


def starts_in(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_command_that_exits_on_its_own_is_started_again_until_asked_to_stop(tmp_path):
    starts = tmp_path / "starts"
    # given a command that runs a while, then exits with an error, as a stuck worker does
    supervisor = respawn("import time; time.sleep(0.3); raise SystemExit(1)", starts, RESPAWN_FAST_EXIT_SECONDS="0.1")
    try:
        # then it is started again, and again
        wait_for(lambda: starts_in(starts) >= 3, timeout=30, what="the command to be started three times")
    finally:
        # when the supervisor is asked to stop
        supervisor.send_signal(signal.SIGTERM)
    # then it ends with the command (killed by the SIGTERM passed on: 128 + 15)
    assert supervisor.wait(timeout=30) == 128 + signal.SIGTERM
    assert "exited with code 1 on its own: starting it again" in supervisor.stderr.read()


def test_sigterm_reaches_the_command_and_its_exit_code_is_the_end(tmp_path):
    starts = tmp_path / "starts"
    # given a command that exits 7 on SIGTERM, as a worker ends its warm shutdown
    prepare = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))"
    supervisor = respawn("[time.sleep(0.05) for _ in iter(int, 1)]", starts, prepare=prepare)
    wait_for(lambda: starts_in(starts) == 1, timeout=30, what="the command to start")

    # when the supervisor (not its process group) gets SIGTERM
    supervisor.send_signal(signal.SIGTERM)

    # then the command got it and ended, and that is the supervisor's end
    assert supervisor.wait(timeout=30) == 7
    assert starts_in(starts) == 1


def test_a_command_that_keeps_failing_at_start_is_given_up(tmp_path):
    starts = tmp_path / "starts"
    # given a command that fails at once, as a worker with a broken setting does
    supervisor = respawn("raise SystemExit(3)", starts, RESPAWN_GIVE_UP_AFTER="3")

    # then after three fast failures it is not started again, and its code ends the supervisor
    assert supervisor.wait(timeout=30) == 3
    assert starts_in(starts) == 3
    assert "exited 3 times in a row" in supervisor.stderr.read()


@pytest.mark.parametrize("name", WORKER_LINES)
def test_make_run_starts_each_worker_under_respawn(name):
    line = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith(f"{name}: "))
    assert "python -m devtools.respawn celery -A claw_ai worker " in line
