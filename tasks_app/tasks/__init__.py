"""Celery tasks, one module per queue (routing is by module: see CELERY_TASK_ROUTES).

Importing the package also registers the worker-control audit command (tasks_app.worker_audit)
and the revoke announcement (tasks_app.revoke_announcement) in every worker.
"""

from tasks_app import revoke_announcement, worker_audit  # noqa: F401

from . import ai_tasks, knowledge_tasks, maintenance_tasks, notification_tasks  # noqa: F401
