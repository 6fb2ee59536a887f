"""GET /api/v1/usage: the caller's token and cost usage against its budgets, and the 429 past one.

`?user_id=` adds one chat user's standing; `?tenant=<username>` reads another API user's, with
a cross-tenant permission (tasks_app.view_all_tasks or conversations.view_all).
"""

from django.contrib.auth import get_user_model
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, permissions, status, viewsets
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response

from conversations.budgets import BudgetExceeded
from conversations.models import VIEW_ALL_PERMISSION, BudgetScope
from conversations.usage import usage_document
from tasks_app.api.views import errors
from tasks_app.models import VIEW_ALL_TASKS


class BudgetExceededError(exceptions.APIException):
    """429 budget_exceeded, with Retry-After (DRF sets the header from `wait`) and the figures."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "budget_exceeded"

    def __init__(self, refused: BudgetExceeded) -> None:
        self.wait = refused.retry_after()
        subject = _("chat user") if refused.refused_by.scope == BudgetScope.CHAT_USER else _("API user")
        super().__init__(
            _("The AI budget of this %(subject)s is used up until %(reset)s UTC; try again after that.")
            % {"subject": subject, "reset": refused.resets_at.strftime("%Y-%m-%d %H:%M")}
        )
        self.extra = {
            "retry_after": self.wait,
            "resets_at": refused.resets_at.isoformat(),
            "budgets": [standing.as_dict() for standing in refused.standings],
        }


def tenant_of(request):
    """The API user ?tenant= names (the caller without it); others need a cross-tenant permission."""
    username = request.query_params.get("tenant") or None
    if username is None or username == request.user.get_username():
        return request.user
    if not (request.user.has_perm(VIEW_ALL_TASKS) or request.user.has_perm(VIEW_ALL_PERMISSION)):
        raise PermissionDenied(
            _("Reading another tenant's data needs the permission %(permission)s.") % {"permission": VIEW_ALL_TASKS}
        )
    model = get_user_model()
    # NUL first: PostgreSQL text cannot hold it, and the lookup would fail (a 500).
    tenant = None if "\x00" in username else model.objects.filter(**{model.USERNAME_FIELD: username}).first()
    if tenant is None:
        raise ValidationError({"tenant": [_("No API user is named %(name)s.") % {"name": username[:150]}]})
    return tenant


class UsageViewSet(viewsets.ViewSet):
    """Your token and cost usage today and this month, against your budgets."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        summary="Token and cost usage against budgets",
        parameters=[
            OpenApiParameter("user_id", str, description="A chat user of the tenant: adds its own standing."),
            OpenApiParameter(
                "tenant",
                str,
                description="Another API user (needs tasks_app.view_all_tasks or conversations.view_all).",
            ),
        ],
        responses={200: dict, **errors(400, 401, 403)},
    )
    def list(self, request):
        tenant = tenant_of(request)
        user_id = request.query_params.get("user_id") or ""
        if len(user_id) > 255 or "\x00" in user_id:
            raise ValidationError({"user_id": [_("A chat user id has at most 255 characters.")]})
        return Response(usage_document(tenant=tenant, user_id=user_id))
