"""Celery tasks, one module per queue (routing is by module: see CELERY_TASK_ROUTES)."""

from . import ai_tasks, knowledge_tasks, maintenance_tasks, notification_tasks  # noqa: F401
