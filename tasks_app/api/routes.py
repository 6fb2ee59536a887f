"""Registers the task endpoints (/api/v1/tasks/...) on the project's router."""

from claw_ai.api import router
from tasks_app.api.views import TaskViewSet, WorkerViewSet

router.register("tasks/workers", WorkerViewSet, basename="task-workers")
router.register("tasks", TaskViewSet, basename="tasks")
