"""One error shape for the whole API: JSON {"message", "code", "errors"?}.

`json_error_handler` is REST_FRAMEWORK["EXCEPTION_HANDLER"], so every DRF view (tasks,
conversations, knowledge) answers its errors this way; claw_ai.middleware uses `error_response`
for the answers it gives before a view runs, and the project's 404 and 500 handlers answer
paths under /api/ the same way (HTML pages elsewhere). `message` is for a person (translated), `code` for
a program, `errors` holds the field errors of a 400.
"""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views import defaults
from rest_framework import exceptions, serializers, status
from rest_framework.views import exception_handler


class ErrorSerializer(serializers.Serializer):
    """The body of every error answer (documented in the OpenAPI schema)."""

    message = serializers.CharField(help_text=gettext_lazy("What went wrong, for a person."))
    code = serializers.CharField(help_text=gettext_lazy("Machine-readable error code."))
    # A field named like Serializer.errors: DRF's metaclass collects declared fields, the property stays.
    errors = serializers.DictField(  # type: ignore[assignment]
        child=serializers.JSONField(), required=False, help_text=gettext_lazy("Field errors (400 only).")
    )


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "service_unavailable"


def json_error_handler(exc, context):
    # Django's Http404 / PermissionDenied (get_object_or_404) become DRF's, as exception_handler does.
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = {"message": _("Invalid input."), "code": "invalid", "errors": errors}
    elif isinstance(exc, exceptions.APIException):
        detail = exc.detail
        response.data = {"message": str(detail), "code": getattr(detail, "code", None) or exc.default_code}
        # Fields an error adds for a program (e.g. the id of the task a 409 is about).
        response.data.update(getattr(exc, "extra", {}))
    return response


def error_response(message: str, *, code: str, status: int) -> JsonResponse:
    """An error answered outside DRF (middleware), in the same shape."""
    return JsonResponse({"message": message, "code": code}, status=status)


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def not_found(request, exception):
    """handler404: a JSON 404 for an unknown /api/ path (DRF's own 404s go through json_error_handler)."""
    if _is_api(request):
        return error_response(
            _("No such endpoint: %(path)s") % {"path": request.path[:255]}, code="not_found", status=404
        )
    return defaults.page_not_found(request, exception)


def server_error(request):
    """handler500: a bug answers an API client in JSON too (the traceback goes to the log, not to it)."""
    if _is_api(request):
        return error_response(_("Server error."), code="server_error", status=500)
    return defaults.server_error(request)
