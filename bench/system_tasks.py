"""The trivial task, through the system: ClawTask, task records, the priority transport,
the record-aware result backend. Workers load it with `-I bench.system_tasks`."""

from claw_ai.celery import celery_app


@celery_app.task(name="bench.system.noop")
def noop(n: int) -> dict:
    return {"n": n}
