"""The chat domain: conversations, their messages, and each chat user's knowledge base."""

from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

# Conversation ids, the same on every path (API, admin, tasks): safe in a URL path and a query string.
CONVERSATION_ID = RegexValidator(r"^[A-Za-z0-9_-]{1,255}\Z", _("Use letters, digits, '_' and '-' only."))
# Permission to read every tenant's conversations and knowledge (not only one's own).
VIEW_ALL_PERMISSION = "conversations.view_all"
# Permission to change every tenant's knowledge documents.
CHANGE_ALL_PERMISSION = "conversations.change_all"


class TenantQuerySet(models.QuerySet):
    """Rows of one tenant: the API user in `created_by` (None: rows made from code)."""

    def of_tenant(self, tenant_id: int | None):
        return self.filter(created_by__isnull=True) if tenant_id is None else self.filter(created_by_id=tenant_id)

    def visible_to(self, user):
        """The caller's own rows; every tenant's with conversations.view_all (is_staff alone is not enough)."""
        if user.has_perm(VIEW_ALL_PERMISSION):
            return self
        return self.filter(created_by=user)


class ConversationQuerySet(TenantQuerySet):
    pass


class Conversation(models.Model):
    """A chat between one chat user (`user_id`) and the assistant, inside one tenant.

    The tenant is the API user who created it (`created_by`): ids and chat users are the tenant's
    own, so "conv_123" of one tenant and "conv_123" of another are two conversations, and the same
    `user_id` under two tenants is two people. Conversations sent from code have no tenant (NULL),
    which is one more tenant of its own. Deleting an API user deletes its tenant's conversations.
    """

    public_id = models.CharField(
        _("conversation id"),
        max_length=255,
        validators=[CONVERSATION_ID],
        help_text=_('Public id, e.g. "conv_123"; unique within its tenant.'),
    )
    user_id = models.CharField(_("chat user id"), max_length=255, help_text=_('The chat user, e.g. "user_456".'))
    title = models.CharField(_("title"), max_length=255, blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("tenant"),
        null=True,
        blank=True,
        # Not SET_NULL: an orphaned conversation would join the code-made tenant, and its
        # messages would be readable by whoever names its id there next.
        on_delete=models.CASCADE,
        related_name="conversations",
        help_text=_("The tenant: API user who created the conversation; empty when created from code."),
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
            models.Index(fields=["created_by", "-id"], name="conv_owner_id_idx"),
            models.Index(fields=["public_id"], name="conv_public_id_idx"),  # the admin's search, across tenants
            models.Index(fields=["user_id", "-updated_at"], name="conv_user_updated_idx"),
            models.Index(fields=["-updated_at", "-id"], name="conv_updated_idx"),
        ]
        constraints = [
            # NULLS NOT DISTINCT: the code-made tenant (NULL) has each id once too.
            models.UniqueConstraint(
                fields=["created_by", "public_id"], nulls_distinct=False, name="conv_one_id_per_tenant"
            ),
        ]
        permissions = [
            ("view_all", _("Can see every tenant's conversations and knowledge documents")),
            ("change_all", _("Can change and re-index every tenant's knowledge documents")),
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
    tokens_estimated = models.BooleanField(
        _("tokens estimated"),
        default=False,
        help_text=_("The provider reported no usage (or the reply was cancelled): the token counts are estimates."),
    )
    finish_reason = models.CharField(
        _("finish reason"),
        max_length=40,
        blank=True,
        default="",
        help_text=_(
            'Why the reply ended: the provider\'s reason ("stop", "length", …), "cancelled", or "budget" '
            "(cut where a budget ran out)."
        ),
    )
    time_to_first_token_ms = models.PositiveIntegerField(
        _("time to first token (ms)"),
        null=True,
        blank=True,
        help_text=_("From the provider request to the first piece of streamed text."),
    )
    tokens_per_second = models.FloatField(
        _("tokens per second"),
        null=True,
        blank=True,
        help_text=_("Completion tokens over the time from the first piece of text to the last."),
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


class KnowledgeDocumentQuerySet(TenantQuerySet):
    def changeable_by(self, user):
        """The caller's own documents; every tenant's with conversations.change_all."""
        if user.has_perm(CHANGE_ALL_PERMISSION):
            return self
        return self.filter(created_by=user)

    def stale(self):
        """Never indexed, or changed since the last indexing."""
        return self.filter(Q(indexed_at__isnull=True) | Q(indexed_at__lt=F("updated_at")))


class KnowledgeDocument(models.Model):
    """A text or Markdown document of one chat user of one tenant, used to ground that user's AI replies.

    Retrieval matches both the tenant (`created_by`) and the chat user: another tenant's chat
    user of the same id never sees it, nor can another tenant add to what this one's user sees.
    """

    user_id = models.CharField(_("chat user id"), max_length=255, help_text=_("Whose replies this document informs."))
    title = models.CharField(_("title"), max_length=255)
    content = models.TextField(_("content"))
    format = models.CharField(_("format"), max_length=20, choices=DocumentFormat.choices, default=DocumentFormat.TEXT)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("tenant"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,  # as for conversations: no orphan joins another tenant
        related_name="knowledge_documents",
        help_text=_("The tenant: API user who uploaded the document; empty when made from code."),
    )
    content_bytes = models.PositiveIntegerField(
        _("size (bytes)"), default=0, help_text=_("UTF-8 size of the content; counts against the tenant's bound.")
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    indexed_at = models.DateTimeField(
        _("indexed"), null=True, blank=True, help_text=_("When its chunks were last rebuilt; stale if before updated.")
    )
    chunk_count = models.PositiveIntegerField(_("chunks"), default=0)
    index_task_id = models.CharField(
        _("indexing task"),
        max_length=255,
        blank=True,
        default="",
        help_text=_("The last indexing task queued; a re-index joins it while it is queued or running."),
    )
    index_requested_at = models.DateTimeField(_("indexing requested"), null=True, blank=True)

    objects = KnowledgeDocumentQuerySet.as_manager()

    class Meta:
        verbose_name = _("knowledge document")
        verbose_name_plural = _("knowledge documents")
        ordering = ["-updated_at", "-id"]
        indexes = [
            models.Index(fields=["user_id", "-updated_at"], name="kdoc_user_updated_idx"),
            models.Index(fields=["created_by", "-updated_at"], name="kdoc_owner_updated_idx"),
            models.Index(fields=["created_by", "-id"], name="kdoc_owner_id_idx"),
            models.Index(fields=["indexed_at"], name="kdoc_indexed_idx"),
        ]

    def __str__(self) -> str:
        return self.title

    def save(self, *args, **kwargs):
        # Kept on every save (API and admin alike), so a tenant's stored bytes are a cheap sum.
        self.content_bytes = len(self.content.encode())
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "content" in update_fields:
            kwargs["update_fields"] = {*update_fields, "content_bytes"}
        super().save(*args, **kwargs)

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


# The most a budget may say: beyond these a figure is a typo, refused by the admin form.
BUDGET_MAX_TOKENS_PER_DAY = 10**12
BUDGET_MAX_USD = 10**7


class BudgetScope(models.TextChoices):
    API_USER = "api_user", _("API user (tenant)")
    CHAT_USER = "chat_user", _("Chat user")


class Budget(models.Model):
    """What an API user (tenant), or one chat user of it, may spend on AI replies (conversations.budgets).

    Without a tenant, a row is the default for every API user (scope api_user) or every chat user
    (scope chat_user); with a tenant, it overrides that default for the tenant, or for all the
    tenant's chat users (empty chat user id) or one of them. Empty figures: no limit. A change here
    applies to the next submit and the next reply, without a restart.
    """

    scope = models.CharField(_("applies to"), max_length=20, choices=BudgetScope.choices)
    tenant = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("tenant"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="budgets",
        help_text=_("The API user this budget is for; empty: the default for everyone."),
    )
    user_id = models.CharField(
        _("chat user id"),
        max_length=255,
        blank=True,
        default="",
        help_text=_("One chat user of the tenant (scope chat user); empty: all of them."),
    )
    tokens_per_day = models.BigIntegerField(
        _("tokens per day"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(BUDGET_MAX_TOKENS_PER_DAY)],
        help_text=_("Prompt and completion tokens of replies per day (UTC); empty: no limit."),
    )
    cost_per_day = models.DecimalField(
        _("USD per day"),
        max_digits=14,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.000001")), MaxValueValidator(BUDGET_MAX_USD)],
        help_text=_("Cost of replies per day (UTC); empty: no limit."),
    )
    cost_per_month = models.DecimalField(
        _("USD per month"),
        max_digits=14,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.000001")), MaxValueValidator(BUDGET_MAX_USD)],
        help_text=_("Cost of replies per calendar month (UTC); empty: no limit."),
    )
    replies_at_once = models.PositiveIntegerField(
        _("replies at once"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(10_000)],
        help_text=_(
            "Chat-user budgets only: most replies of one chat user in the workers' hands at once "
            "(conversations.admission); empty: AI_MAX_CONCURRENT_PER_USER."
        ),
    )
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("budget")
        verbose_name_plural = _("budgets")
        ordering = ["scope", "tenant_id", "user_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["scope", "tenant", "user_id"], nulls_distinct=False, name="budget_one_per_subject"
            ),
            models.CheckConstraint(
                condition=Q(scope="chat_user") | Q(user_id=""), name="budget_chat_user_only_in_its_scope"
            ),
            models.CheckConstraint(
                condition=Q(user_id="") | Q(tenant__isnull=False), name="budget_chat_user_needs_tenant"
            ),
        ]

    def __str__(self) -> str:
        who = self.tenant.get_username() if self.tenant is not None else _("everyone")
        return f"{self.get_scope_display()}: {who}{' / ' + self.user_id if self.user_id else ''}"

    def clean(self) -> None:
        if self.user_id and self.scope != BudgetScope.CHAT_USER:
            raise ValidationError({"user_id": _("A chat user id belongs to a chat-user budget.")})
        if self.user_id and not self.tenant_id:
            raise ValidationError({"tenant": _("Name the tenant whose chat user this is.")})
        if self.replies_at_once is not None and self.scope != BudgetScope.CHAT_USER:
            raise ValidationError({"replies_at_once": _("Replies at once are counted per chat user.")})


class BudgetReservation(models.Model):
    """What a reply being written may still spend, counted against its budgets until it is saved.

    Taken under a lock when the reply starts and deleted once its real usage is in the ledger
    (the Message), so replies running at once share what is left instead of each seeing all of
    it. A reservation of a worker that died lapses after the task time limit.
    """

    task_id = models.CharField(_("task id"), max_length=255, unique=True)
    tenant = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("tenant"), null=True, blank=True, on_delete=models.CASCADE
    )
    user_id = models.CharField(_("chat user id"), max_length=255)
    tokens = models.BigIntegerField(_("tokens"))
    cost = models.DecimalField(_("cost (USD)"), max_digits=14, decimal_places=6)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("budget reservation")
        verbose_name_plural = _("budget reservations")
        indexes = [models.Index(fields=["tenant", "user_id"], name="budgetres_subject_idx")]

    def __str__(self) -> str:
        return f"{self.task_id}: {self.tokens} tokens, {self.cost} USD"


class AdmissionState(models.TextChoices):
    WAITING = "waiting", _("Waiting")
    ADMITTED = "admitted", _("Admitted")


class ReplyAdmission(models.Model):
    """An AI reply in hand for one chat user: admitted (sent to the workers) or waiting its turn here.

    conversations.admission lets at most AI_MAX_CONCURRENT_PER_USER of a chat user's replies be
    admitted at once, one per conversation in the order they were sent; the rest wait in this
    table, not in the broker, so one user's burst never stands in front of other users. A row
    goes when its reply ends.
    """

    task_id = models.CharField(_("task id"), max_length=255, unique=True)
    tenant = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("tenant"), null=True, blank=True, on_delete=models.CASCADE
    )
    user_id = models.CharField(_("chat user id"), max_length=255)
    conversation_id = models.CharField(_("conversation id"), max_length=255)
    priority = models.PositiveSmallIntegerField(_("priority"), help_text=_("0-9, 9 highest."))
    state = models.CharField(_("state"), max_length=20, choices=AdmissionState.choices)
    waiting_for = models.CharField(
        _("waiting for"),
        max_length=40,
        blank=True,
        default="",
        help_text=_('"user_concurrency" or "conversation_order" while it waits.'),
    )
    created_at = models.DateTimeField(_("submitted"), auto_now_add=True)
    admitted_at = models.DateTimeField(_("admitted"), null=True, blank=True)

    class Meta:
        verbose_name = _("reply admission")
        verbose_name_plural = _("reply admissions")
        ordering = ["id"]
        indexes = [models.Index(fields=["tenant", "user_id", "state"], name="admission_user_state_idx")]

    def __str__(self) -> str:
        return f"{self.task_id} [{self.state}]"
