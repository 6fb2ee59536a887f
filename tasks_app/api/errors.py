"""Every error of the task API is JSON with a message: {"message", "code", "errors"?}."""

from django.utils.translation import gettext as _
from rest_framework import exceptions, status
from rest_framework.views import exception_handler


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "service_unavailable"


class TooManyTasks(exceptions.APIException):
    """The caller has too many unfinished tasks (429 without Retry-After: it depends on the workers)."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "too_many_unfinished_tasks"


def json_error_handler(exc, context):
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = {"message": _("Invalid input."), "code": "invalid", "errors": errors}
    elif isinstance(exc, exceptions.APIException):
        detail = exc.detail
        response.data = {"message": str(detail), "code": getattr(detail, "code", None) or exc.default_code}
    return response
