"""Budgets in the admin: the default for everyone and overrides per tenant or chat user, and a
usage page per user (today's and this month's tokens and cost against budget, replies in hand),
and the replies waiting their turn (conversations.admission).

The form refuses negative and absurd figures (the model's validators); a saved change applies to
the next submit and reply, as conversations.budgets reads the rows every time.
"""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from conversations.models import Budget, ReplyAdmission
from conversations.usage import usage_document


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "scope",
        "tenant",
        "user_id",
        "tokens_per_day",
        "cost_per_day",
        "cost_per_month",
        "replies_at_once",
        "usage",
    )
    list_filter = ("scope",)
    search_fields = ("tenant__username", "user_id")
    raw_id_fields = ("tenant",)
    readonly_fields = ("updated_at",)

    def get_urls(self):
        own = [path("usage/", self.admin_site.admin_view(self.usage_view), name="conversations_budget_usage")]
        return own + super().get_urls()

    @admin.display(description=_("usage"))
    def usage(self, budget):
        if not budget.tenant_id:
            return "—"
        url = reverse("admin:conversations_budget_usage") + f"?tenant={budget.tenant_id}&user_id={budget.user_id}"
        return format_html('<a href="{}">{}</a>', url, _("usage now"))

    def usage_view(self, request):
        """One API user's (and optionally one chat user's) usage against budget: ?tenant=<id>&user_id=."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        tenant = get_user_model().objects.filter(pk=request.GET.get("tenant") or 0).first()
        user_id = (request.GET.get("user_id") or "")[:255]
        document = usage_document(tenant=tenant, user_id=user_id) if tenant else None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("AI usage and budget"),
            "tenant": tenant,
            "user_id": user_id,
            "usage": document,
            "standings": [document[key] for key in ("api_user", "chat_user") if document and document[key]],
        }
        return TemplateResponse(request, "admin/conversations/budget/usage.html", context)


@admin.register(ReplyAdmission)
class ReplyAdmissionAdmin(admin.ModelAdmin):
    """AI replies in hand per chat user: admitted, or waiting their turn (and for what). Read-only."""

    list_display = ("task_id", "tenant", "user_id", "conversation_id", "priority", "state", "waiting_for", "created_at")
    list_filter = ("state", "waiting_for")
    search_fields = ("=task_id", "=user_id", "=conversation_id")
    readonly_fields = (*list_display, "admitted_at")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
