"""The chat domain: conversations, their messages, and each chat user's knowledge base."""

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _


class ConversationQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Staff see every conversation; other API users the ones they created."""
        if user.is_staff:
            return self
        return self.filter(created_by=user)


class Conversation(models.Model):
    """A chat between one chat user (`user_id`) and the assistant.

    A conversation belongs to the chat product's user (`user_id`, e.g. "user_456") and to the
    API user who created it (`created_by`); non-staff API users see only their own.
    """

    public_id = models.CharField(
        _("conversation id"), max_length=255, unique=True, help_text=_('Public id, e.g. "conv_123".')
    )
    user_id = models.CharField(_("chat user id"), max_length=255, help_text=_('The chat user, e.g. "user_456".'))
    title = models.CharField(_("title"), max_length=255, blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="conversations",
        help_text=_("API user who created the conversation; empty when created from code."),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True, help_text=_("Last message or change."))

    objects = ConversationQuerySet.as_manager()

    class Meta:
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")
        ordering = ["-updated_at", "-id"]
        indexes = [
            models.Index(fields=["created_by", "-updated_at"], name="conv_owner_updated_idx"),
            models.Index(fields=["user_id", "-updated_at"], name="conv_user_updated_idx"),
            models.Index(fields=["-updated_at", "-id"], name="conv_updated_idx"),
        ]

    def __str__(self) -> str:
        return self.public_id


class MessageRole(models.TextChoices):
    USER = "user", _("User")
    ASSISTANT = "assistant", _("Assistant")


class Message(models.Model):
    conversation = models.ForeignKey(
        Conversation, verbose_name=_("conversation"), on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(_("role"), max_length=20, choices=MessageRole.choices)
    content = models.TextField(_("content"))
    model = models.CharField(_("model"), max_length=255, blank=True, default="", help_text=_("Model that answered."))
    prompt_tokens = models.PositiveIntegerField(_("prompt tokens"), default=0)
    completion_tokens = models.PositiveIntegerField(_("completion tokens"), default=0)
    cost = models.DecimalField(_("cost (USD)"), max_digits=12, decimal_places=6, default=0)
    task_id = models.CharField(
        _("task id"),
        max_length=255,
        blank=True,
        default="",
        help_text=_("The Celery task that saved this message; one user and one assistant message per task."),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["conversation", "created_at", "id"], name="msg_conv_created_idx"),
            models.Index(fields=["task_id"], name="msg_task_idx"),
        ]
        constraints = [
            # A task delivered twice (late ack, worker lost) must not save its messages twice.
            models.UniqueConstraint(
                fields=["task_id", "role"], condition=~Q(task_id=""), name="msg_one_per_task_and_role"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:50]}"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class DocumentFormat(models.TextChoices):
    TEXT = "text", _("Plain text")
    MARKDOWN = "markdown", _("Markdown")


class KnowledgeDocumentQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Staff see every document; other API users the ones they uploaded."""
        if user.is_staff:
            return self
        return self.filter(created_by=user)

    def stale(self):
        """Never indexed, or changed since the last indexing."""
        return self.filter(Q(indexed_at__isnull=True) | Q(indexed_at__lt=F("updated_at")))


class KnowledgeDocument(models.Model):
    """A text or Markdown document of one chat user, used to ground that user's AI replies."""

    user_id = models.CharField(_("chat user id"), max_length=255, help_text=_("Whose replies this document informs."))
    title = models.CharField(_("title"), max_length=255)
    content = models.TextField(_("content"))
    format = models.CharField(_("format"), max_length=20, choices=DocumentFormat.choices, default=DocumentFormat.TEXT)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("uploaded by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="knowledge_documents",
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    indexed_at = models.DateTimeField(
        _("indexed"), null=True, blank=True, help_text=_("When its chunks were last rebuilt; stale if before updated.")
    )
    chunk_count = models.PositiveIntegerField(_("chunks"), default=0)

    objects = KnowledgeDocumentQuerySet.as_manager()

    class Meta:
        verbose_name = _("knowledge document")
        verbose_name_plural = _("knowledge documents")
        ordering = ["-updated_at", "-id"]
        indexes = [
            models.Index(fields=["user_id", "-updated_at"], name="kdoc_user_updated_idx"),
            models.Index(fields=["created_by", "-updated_at"], name="kdoc_owner_updated_idx"),
            models.Index(fields=["indexed_at"], name="kdoc_indexed_idx"),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def is_stale(self) -> bool:
        return self.indexed_at is None or self.indexed_at < self.updated_at


class KnowledgeChunk(models.Model):
    """A searchable piece of a document; rebuilt whole each time the document is indexed."""

    document = models.ForeignKey(
        KnowledgeDocument, verbose_name=_("document"), on_delete=models.CASCADE, related_name="chunks"
    )
    # Copied from the document so retrieval filters chunks without a join.
    user_id = models.CharField(_("chat user id"), max_length=255)
    position = models.PositiveIntegerField(_("position"), help_text=_("Order of the chunk in its document."))
    content = models.TextField(_("content"))
    search_vector = SearchVectorField(_("search vector"), null=True, help_text=_("PostgreSQL full-text vector."))

    class Meta:
        verbose_name = _("knowledge chunk")
        verbose_name_plural = _("knowledge chunks")
        ordering = ["document", "position"]
        indexes = [
            GinIndex(fields=["search_vector"], name="kchunk_search_gin"),
            models.Index(fields=["user_id"], name="kchunk_user_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["document", "position"], name="kchunk_one_per_position"),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.position}"
