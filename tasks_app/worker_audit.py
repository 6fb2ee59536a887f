"""Worker control says who asked for it, in the workers' own logs.

Celery's pool_restart and shutdown commands carry no caller. Before either is broadcast, the API
broadcasts `claw_control_audit` to the same workers: each logs the action and the user at WARNING,
so a log read after an outage names who stopped or restarted the worker. The command registers
when this module is imported, which every worker does (tasks_app.tasks imports it).
"""

import logging

from celery.worker.control import control_command

from claw_ai.celery import celery_app

logger = logging.getLogger(__name__)


@control_command(
    args=[("action", str), ("username", str)],
    signature="<action> <username>",
)
def claw_control_audit(state, action: str = "", username: str = "", **_kwargs) -> dict:
    logger.warning("worker control: %s requested by %s through the API", action, username)
    return {"ok": "logged"}


def announce(*, action: str, username: str, destination: list[str] | None) -> None:
    """Tell the addressed workers (all when None) who asked for `action`, before it is sent."""
    celery_app.control.broadcast(
        "claw_control_audit", destination=destination, arguments={"action": action, "username": username}
    )
