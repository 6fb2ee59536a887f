"""A task cancelled through the API shows in Flower as REVOKED at once, not only when its eta comes.

Flower learns a task's state from the workers' events. Celery's revoke only flags the id in each
worker: a worker holding a delayed task (countdown/eta) sends `task-revoked` when the eta comes and
it discards the task, so until then Flower shows RECEIVED while the API and the admin say REVOKED.
After the revoke, tasks_app.services.cancel_task broadcasts `claw_announce_revoked`: the worker that
holds the task discards it now, under its own name (Flower keeps the task on that worker):
`task-revoked` event, message acknowledged, its slot freed. A task still in the broker gets the
same from the worker that receives it (the revoke flag), and a running one ends through the
revoke and the task's own cancellation check. The command registers when this module is imported,
which every worker does (tasks_app.tasks imports it).
"""

import logging

from celery.worker import state as worker_state
from celery.worker.control import control_command

from claw_ai.celery import celery_app

logger = logging.getLogger(__name__)


@control_command(args=[("task_id", str)], signature="<task_id>")
def claw_announce_revoked(state, task_id: str = "", **_kwargs) -> dict:
    worker_state.revoked.add(task_id)  # as the revoke does, should this command be read first
    # celery-types 0.26 has no scheduled_requests in celery.worker.state (Celery 5 has).
    for request in tuple(worker_state.scheduled_requests):  # type: ignore[attr-defined]
        if request.id != task_id or request in worker_state.active_requests:
            continue
        consumer = state.consumer
        entry = request._eta_timer_entry
        if entry is not None and consumer.timer is not None:
            consumer.timer.cancel(entry)  # the eta will not come back to it...
            consumer.qos.decrement_eventually()  # ...so free the slot the eta would have freed
        worker_state.scheduled_requests.discard(request)  # type: ignore[attr-defined]
        request.revoked()  # sends task-revoked, acknowledges the message, marks it revoked
        return {"ok": f"{task_id} discarded"}
    return {"ok": "not held here"}


def announce(task_id: str) -> None:
    """Have the worker that holds `task_id` for later discard it now, telling Flower (no reply awaited)."""
    celery_app.control.broadcast("claw_announce_revoked", arguments={"task_id": task_id})
