"""The one router of the REST API (/api/v1/). Each app registers its viewsets here."""

from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from rest_framework import routers
from rest_framework.response import Response

# Every endpoint, one line each on the API root: (method, path under /api/v1/, what it does).
# The first nine are the seed's task endpoints; a path with {task_id} is a template to fill in.
ENDPOINTS = (
    ("GET", "tasks/status/{task_id}", _("one task's state")),
    ("GET", "tasks/list", _("tasks, newest first (?status=SUCCESS&limit=20)")),
    ("POST", "tasks/cancel/{task_id}", _("cancel a queued, delayed or running task")),
    ("POST", "tasks/retry/{task_id}", _("run a failed or cancelled task again")),
    ("GET", "tasks/stats", _("counts by state, and live workers")),
    ("POST", "tasks/ai/generate", _("submit an AI reply generation")),
    ("GET", "tasks/workers", _("live workers and what they do")),
    ("POST", "tasks/workers/pool/restart", _("restart workers' process pools")),
    ("POST", "tasks/workers/shutdown", _("shut workers down")),
    ("GET", "conversations/", _("your conversations (POST: start one)")),
    ("GET", "knowledge/documents/", _("your knowledge documents (POST: add one)")),
)


class ApiRootView(routers.APIRootView):
    """Every endpoint of the CLAW.AI task system, one line each: method, what it does, and its link.

    Authenticate with a session (log in, top right) or `Authorization: Token <key>`
    (`python manage.py drf_create_token <user>`). The interactive docs are at /api/docs/.
    """

    name = _("CLAW.AI API")

    def get(self, request, *args, **kwargs):
        base = request.build_absolute_uri(reverse("api-root"))
        lines = {f"{method} {path}  ({does})": base + path for method, path, does in ENDPOINTS}
        lines[str(_("interactive docs (Swagger UI)"))] = request.build_absolute_uri(reverse("api-docs"))
        return Response(lines)


class OptionalSlashRouter(routers.DefaultRouter):
    """The seed's paths have no trailing slash; accept both forms."""

    APIRootView = ApiRootView

    def __init__(self) -> None:
        super().__init__()
        self.trailing_slash = "/?"


router = OptionalSlashRouter()
