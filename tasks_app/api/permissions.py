"""Named permissions of the task API (granted in the admin, to a group or a user; is_staff grants none)."""

from django.utils.translation import gettext_lazy as _
from rest_framework.permissions import BasePermission

from tasks_app.models import CONTROL_WORKERS


class CanControlWorkers(BasePermission):
    message = _("Worker control needs the permission tasks_app.control_workers, granted in the admin.")

    def has_permission(self, request, view) -> bool:
        return request.user.has_perm(CONTROL_WORKERS)
