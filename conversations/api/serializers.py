"""Input and output shapes of the conversation and knowledge endpoints."""

from datetime import timedelta
from pathlib import PurePath

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from conversations.models import CONVERSATION_ID, Conversation, DocumentFormat, KnowledgeDocument, Message
from tasks_app.api.serializers import CallbackUrlField

# Largest uploaded document file, in bytes.
MAX_DOCUMENT_FILE_BYTES = 2 * 1024 * 1024


class MessageSerializer(serializers.ModelSerializer):
    tokens = serializers.SerializerMethodField()
    cost = serializers.FloatField()

    class Meta:
        model = Message
        fields = ["id", "role", "content", "model", "tokens", "cost", "task_id", "finish_reason", "created_at"]

    def get_tokens(self, message: Message) -> dict:
        return {"prompt": message.prompt_tokens, "completion": message.completion_tokens, "total": message.total_tokens}


class TenantField(serializers.CharField):
    """The owning API user's username (null for what was made from code)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(source="created_by", read_only=True, allow_null=True, **kwargs)

    def to_representation(self, user) -> str:
        return user.get_username()


class ConversationSerializer(serializers.ModelSerializer):
    conversation_id = serializers.CharField(source="public_id")
    tenant = TenantField(help_text=_("The API user (tenant) the conversation belongs to."))

    class Meta:
        model = Conversation
        fields = ["conversation_id", "user_id", "tenant", "title", "created_at", "updated_at"]


class ConversationDetailSerializer(ConversationSerializer):
    messages = MessageSerializer(many=True, read_only=True)

    class Meta(ConversationSerializer.Meta):
        fields = [*ConversationSerializer.Meta.fields, "messages"]


class ConversationCreateSerializer(serializers.Serializer):
    conversation_id = serializers.CharField(
        max_length=255, required=False, validators=[CONVERSATION_ID], help_text=_("Omit to get a generated id.")
    )
    user_id = serializers.CharField(max_length=255, help_text=_('The chat user, e.g. "user_456".'))
    title = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")


class KnowledgeDocumentSerializer(serializers.ModelSerializer):
    """Output; also input for JSON uploads and edits (user_id, title, content, format)."""

    is_stale = serializers.BooleanField(read_only=True)
    tenant = TenantField(help_text=_("The API user (tenant) the document belongs to."))
    index_task_id = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text=_("The indexing task of the document's last change; null when it could not be queued."),
    )

    class Meta:
        model = KnowledgeDocument
        fields = [
            "id",
            "user_id",
            "tenant",
            "title",
            "content",
            "format",
            "created_at",
            "updated_at",
            "indexed_at",
            "chunk_count",
            "is_stale",
            "index_task_id",
        ]
        read_only_fields = ["created_at", "updated_at", "indexed_at", "chunk_count"]


class KnowledgeUploadSerializer(serializers.Serializer):
    """A document as JSON (`content`) or as an uploaded UTF-8 text/Markdown `file`."""

    user_id = serializers.CharField(max_length=255)
    title = serializers.CharField(max_length=255, required=False)
    content = serializers.CharField(required=False, trim_whitespace=False)
    file = serializers.FileField(required=False, write_only=True)
    format = serializers.ChoiceField(choices=DocumentFormat.choices, required=False)

    def validate(self, data: dict) -> dict:
        upload = data.pop("file", None)
        if upload is not None:
            if upload.size > MAX_DOCUMENT_FILE_BYTES:
                too_big = _("Files up to %(size)d bytes.") % {"size": MAX_DOCUMENT_FILE_BYTES}
                raise serializers.ValidationError({"file": too_big})
            try:
                data.setdefault("content", upload.read().decode("utf-8"))
            except UnicodeDecodeError:
                raise serializers.ValidationError({"file": _("Upload UTF-8 text or Markdown.")}) from None
            if "\x00" in data["content"]:  # binary, and PostgreSQL text cannot hold NUL
                raise serializers.ValidationError({"file": _("Upload UTF-8 text or Markdown.")})
            name = PurePath(upload.name or "document.txt")
            data.setdefault("title", name.stem[:255] or "document")
            if name.suffix.lower() in (".md", ".markdown"):
                data.setdefault("format", DocumentFormat.MARKDOWN)
        if not data.get("content", "").strip():
            raise serializers.ValidationError({"content": _("Send the document's text as content or as a file.")})
        if not data.get("title"):
            raise serializers.ValidationError({"title": _("This field is required.")})
        data.setdefault("format", DocumentFormat.TEXT)
        return data


class AIGenerateSerializer(serializers.Serializer):
    conversation_id = serializers.CharField(
        max_length=255, validators=[CONVERSATION_ID], help_text=_('e.g. "conv_123": letters, digits, "_" and "-".')
    )
    user_message = serializers.CharField(max_length=settings.AI_USER_MESSAGE_MAX_LENGTH)
    temperature = serializers.FloatField(min_value=0.0, max_value=2.0, required=False, default=0.7)
    user_id = serializers.CharField(max_length=255, help_text=_('The chat user, e.g. "user_456".'))
    priority = serializers.IntegerField(
        min_value=settings.TASK_PRIORITY_MIN,
        max_value=settings.TASK_PRIORITY_MAX,
        required=False,
        help_text=_("0-9, 9 highest."),
    )
    countdown = serializers.IntegerField(
        min_value=0, max_value=settings.TASK_MAX_COUNTDOWN, required=False, help_text=_("Seconds to wait.")
    )
    eta = serializers.DateTimeField(required=False, help_text=_("Earliest start (ISO 8601); not with countdown."))
    callback_url = CallbackUrlField(
        required=False, allow_null=True, max_length=2000, help_text=_("Notified when the reply is ready.")
    )
    supersede = serializers.BooleanField(
        required=False,
        default=False,
        help_text=_("Cancel this conversation's reply still being written (or queued) first: the user moved on."),
    )

    def validate_eta(self, value):
        if value > timezone.now() + timedelta(seconds=settings.TASK_MAX_COUNTDOWN):
            raise serializers.ValidationError(
                _("At most %(seconds)d seconds ahead.") % {"seconds": settings.TASK_MAX_COUNTDOWN}
            )
        return value

    def validate(self, attrs):
        if attrs.get("countdown") is not None and attrs.get("eta") is not None:
            raise serializers.ValidationError({"eta": [_("Give countdown or eta, not both.")]})
        return attrs
