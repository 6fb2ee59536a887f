"""Errors of the task endpoints beyond the project-wide ones (claw_ai.errors)."""

from rest_framework import exceptions, status


class TooManyTasks(exceptions.APIException):
    """The caller has too many unfinished tasks (429 without Retry-After: it depends on the workers)."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "too_many_unfinished_tasks"
