"""Conversations with their messages, and knowledge documents with a re-index action.

Messages are written by the AI task (conversations.services), so they are read-only
here; a knowledge document edited here is queued for indexing once the edit commits.
"""

from urllib.parse import urlencode

from django.contrib import admin, messages
from django.db import transaction
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from conversations import admin_budgets  # noqa: F401  (registers the budget admin)
from conversations.knowledge import knowledge_schedule_reindex
from conversations.models import Conversation, KnowledgeDocument, Message
from tasks_app.models import TaskRecord
from tasks_app.paginators import EstimatedCountPaginator


class MessageInline(admin.TabularInline):
    model = Message
    fields = (
        "created_at",
        "role",
        "short_content",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "tokens_estimated",
        "cost",
        "finish_reason",
        "time_to_first_token_ms",
        "tokens_per_second",
        "task",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description=_("content"))
    def short_content(self, message):
        return message.content if len(message.content) <= 300 else message.content[:300] + "…"

    @admin.display(description=_("task"))
    def task(self, message):
        if not message.task_id:
            return "-"
        record = TaskRecord.objects.filter(task_id=message.task_id).only("pk").first()
        if record is None:
            return message.task_id
        url = reverse("admin:tasks_app_taskrecord_change", args=[record.pk])
        return format_html('<a href="{}">{}</a>', url, message.task_id)


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("public_id", "user_id", "title", "created_by", "created_at", "updated_at")
    list_select_related = ("created_by",)
    # Exact matches, each served by an index (the task admin links here with ?q=<conversation id>).
    search_fields = ("=public_id", "=user_id")
    search_help_text = _("Exact conversation id or chat user id.")
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    readonly_fields = ("public_id", "user_id", "created_by", "created_at", "updated_at", "totals", "tasks")
    fields = ("public_id", "user_id", "title", "created_by", "created_at", "updated_at", "totals", "tasks")
    inlines = [MessageInline]

    def has_add_permission(self, request):
        return False  # conversations start through the API

    @admin.display(description=_("totals"))
    def totals(self, conversation):
        rows = conversation.messages.values_list("prompt_tokens", "completion_tokens", "cost")
        prompt = sum(row[0] for row in rows)
        completion = sum(row[1] for row in rows)
        cost = sum((row[2] for row in rows), 0)
        return _("%(prompt)d prompt + %(completion)d completion tokens, %(cost)s USD") % {
            "prompt": prompt,
            "completion": completion,
            "cost": cost,
        }

    @admin.display(description=_("tasks"))
    def tasks(self, conversation):
        url = reverse("admin:tasks_app_taskrecord_changelist")
        query = urlencode({"q": conversation.public_id})
        return format_html('<a href="{}?{}">{}</a>', url, query, _("Tasks of this conversation"))


@admin.register(KnowledgeDocument)
class KnowledgeDocumentAdmin(admin.ModelAdmin):
    list_display = ("title", "user_id", "format", "chunk_count", "indexed_at", "updated_at", "index_up_to_date")
    list_filter = ("format",)
    search_fields = ("=user_id", "title")
    readonly_fields = (
        "created_by",
        "created_at",
        "updated_at",
        "indexed_at",
        "chunk_count",
        "content_bytes",
        "index_task_id",
        "index_requested_at",
    )
    actions = ["reindex_selected"]

    # A yes/no icon says yes in green and no in red: asked as "stale?", a document that is fine got
    # the red ✖. Asked the other way round, green means fine and red means re-index it.
    @admin.display(description=_("index up to date"), boolean=True)
    def index_up_to_date(self, document):
        return not document.is_stale

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
        # Queue the indexing once the admin's transaction has committed the new content.
        transaction.on_commit(lambda: knowledge_schedule_reindex(obj, requested_by=request.user, content_changed=True))

    @admin.action(description=_("Re-index selected documents"), permissions=["change"])
    def reindex_selected(self, request, queryset):
        queued, failed = [], []
        for document in queryset:
            indexing = knowledge_schedule_reindex(document, requested_by=request.user)
            if indexing.task_id:
                queued.append(document)
                joined = " (joined the indexing already queued)" if indexing.joined else ""
                self.log_change(request, document, f"Re-index queued as task {indexing.task_id}{joined}")
            else:
                failed.append(document)
        if queued:
            self.message_user(
                request,
                ngettext(
                    "Queued re-indexing of %(count)d document.",
                    "Queued re-indexing of %(count)d documents.",
                    len(queued),
                )
                % {"count": len(queued)},
                messages.SUCCESS,
            )
        if failed:
            self.message_user(
                request,
                _("Could not queue (broker unreachable; the periodic re-index will retry): %(titles)s")
                % {"titles": ", ".join(document.title for document in failed)},
                messages.WARNING,
            )
