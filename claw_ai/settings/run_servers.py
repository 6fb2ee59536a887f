"""Where a running `make run` leaves the addresses of the private servers it started.

`make run` starts PostgreSQL and Redis on free ports, different at every run. So that `manage.py ...`
and `celery -A claw_ai ...` in another terminal of the same checkout reach them with nothing
exported, `make run` writes their URLs here while it runs (devtools.run) and development settings
read them for what neither the environment nor .env names. Production and test settings never read
this file. No Django import here: devtools.run uses it before any settings exist.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent
SERVERS_FILE = BASE_DIR / ".devdata" / "run" / "servers.env"
# The process that wrote the file: a file left by a killed `make run` names a dead one and is ignored.
PID_NAME = "CLAW_RUN_PID"


def write(addresses: dict[str, str]) -> None:
    SERVERS_FILE.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Written by `make run` while it runs, for manage.py and celery in other terminals; removed when it stops.",
        f"{PID_NAME}={os.getpid()}",
        *(f"{name}={value}" for name, value in sorted(addresses.items())),
    ]
    SERVERS_FILE.write_text("\n".join(lines) + "\n")
    SERVERS_FILE.chmod(0o600)


def remove() -> None:
    with contextlib.suppress(FileNotFoundError):
        SERVERS_FILE.unlink()


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def read() -> dict[str, str]:
    """The addresses a live `make run` of this checkout wrote, or nothing."""
    try:
        lines = SERVERS_FILE.read_text().splitlines()
    except OSError:
        return {}
    values = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    if not _alive(values.pop(PID_NAME, "")):
        return {}
    return values


def read_into_environ() -> None:
    """Name the running `make run`'s servers for what neither the environment nor .env names."""
    dotenv = BASE_DIR / ".env"
    if dotenv.exists():  # the real environment wins over .env, and .env over this file
        environ.Env.read_env(dotenv, overwrite=False)
    for name, value in read().items():
        os.environ.setdefault(name, value)
