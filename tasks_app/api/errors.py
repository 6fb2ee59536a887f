"""Errors of the task endpoints beyond the project-wide ones (claw_ai.errors)."""

from django.utils.translation import gettext as _
from rest_framework import exceptions, status

from tasks_app.services import TooManyUnfinishedTasks


class TooManyTasks(exceptions.APIException):
    """The caller has too many unfinished tasks (429 without Retry-After: it depends on the workers)."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "too_many_unfinished_tasks"


def too_many_tasks(refused: TooManyUnfinishedTasks) -> TooManyTasks:
    return TooManyTasks(
        _(
            "You have %(unfinished)d unfinished tasks; the limit is %(limit)d. "
            "Wait for some to finish (or cancel them) and try again."
        )
        % {"unfinished": refused.unfinished, "limit": refused.limit}
    )
