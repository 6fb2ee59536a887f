"""Conversations (/api/v1/conversations/) and knowledge documents (/api/v1/knowledge/documents/).

Every caller is an authenticated API user, and each API user is a tenant: what it creates is its
own, conversation ids and chat user ids are its own. `?tenant=<username>` reads another tenant's
data, for holders of conversations.view_all (changing another's documents: conversations.change_all).
"""

from typing import TYPE_CHECKING, cast

from django.contrib.auth import get_user_model
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from claw_ai.errors import Conflict, ErrorSerializer
from claw_ai.pagination import NewestFirstPagination
from claw_ai.throttles import WriteRateThrottle
from conversations.api.serializers import (
    ConversationCreateSerializer,
    ConversationDetailSerializer,
    ConversationSerializer,
    KnowledgeDocumentSerializer,
    KnowledgeUploadSerializer,
)
from conversations.knowledge import (
    KnowledgeQuotaExceeded,
    knowledge_document_save,
    knowledge_schedule_reindex,
)
from conversations.models import VIEW_ALL_PERMISSION, Conversation, KnowledgeDocument
from conversations.services import ConversationExists, conversation_create
from tasks_app.api.errors import too_many_tasks
from tasks_app.services import TooManyUnfinishedTasks, ensure_below_unfinished_limit

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractUser

# Ids in URLs: anything but "/", "." (format suffixes) and NUL (PostgreSQL text cannot hold it).
LOOKUP_VALUE = r"[^/.\x00]+"

TENANT_PARAMETER = OpenApiParameter(
    "tenant",
    OpenApiTypes.STR,
    description="Username of another tenant to read (needs conversations.view_all). Default: your own.",
)


def user_id_filter(request: Request) -> str | None:
    """The optional ?user_id= filter; NUL would make PostgreSQL fail the query (a 500), so it is a 400."""
    user_id = request.query_params.get("user_id")
    if user_id is not None and "\x00" in user_id:
        raise ValidationError({"user_id": [_("Null characters are not allowed.")]})
    return user_id or None


def tenant_filter(request: Request) -> int | None:
    """The user id named by ?tenant=<username>, or None when absent.

    Naming a tenant other than oneself needs conversations.view_all (403 otherwise, whether or
    not that user exists, so the answer tells nothing about who does).
    """
    username = request.query_params.get("tenant") or None  # ?tenant= (empty) is no filter, as ?user_id=
    if username is None or username == request.user.get_username():
        return None if username is None else request.user.pk
    if not request.user.has_perm(VIEW_ALL_PERMISSION):
        raise PermissionDenied(
            _("Reading another tenant's data needs the permission %(permission)s.")
            % {"permission": VIEW_ALL_PERMISSION}
        )
    # NUL first: PostgreSQL text cannot hold it, and the lookup would fail (a 500).
    tenant = (
        None
        if "\x00" in username
        else get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username}).first()
    )
    if tenant is None:
        raise ValidationError({"tenant": [_("No API user is named %(name)s.") % {"name": username[:150]}]})
    return tenant.pk


ERROR_DESCRIPTIONS = {
    400: "Invalid input: field errors under `errors` (none when the body could not be parsed).",
    401: "Not authenticated.",
    403: "Another tenant's data, without the permission for it; or the tenant's knowledge base is full "
    "(code `quota_exceeded`).",
    404: "No such object (or not yours).",
    409: "An indexing of the document is already queued or running (its task id is in `index_task_id`).",
    429: "Too many requests (code `throttled`, with Retry-After) or too many unfinished tasks.",
}


class IndexingConflictSerializer(ErrorSerializer):
    index_task_id = serializers.CharField(help_text=_("The indexing task already queued or running."))


def errors(*codes: int) -> dict:
    """Error answers, in the API's one shape (claw_ai.errors)."""
    shapes = {409: IndexingConflictSerializer}
    return {
        code: OpenApiResponse(shapes.get(code, ErrorSerializer), description=ERROR_DESCRIPTIONS[code]) for code in codes
    }


class QuotaExceeded(PermissionDenied):
    default_code = "quota_exceeded"


@extend_schema_view(
    list=extend_schema(
        parameters=[TENANT_PARAMETER], responses={200: ConversationSerializer(many=True), **errors(400, 401, 403)}
    )
)
class ConversationViewSet(
    mixins.CreateModelMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Create, list (newest first; `?user_id=`, `?tenant=` filter) and show your conversations with their messages."""

    lookup_field = "public_id"
    lookup_url_kwarg = "conversation_id"
    lookup_value_regex = LOOKUP_VALUE
    pagination_class = NewestFirstPagination
    throttle_classes = [WriteRateThrottle]
    throttle_scopes = {"create": "conversation_create"}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no real caller
            return Conversation.objects.none()
        tenant = tenant_filter(self.request)
        if self.action == "retrieve":
            # An id names a conversation within one tenant: the caller's, or the one asked for.
            return Conversation.objects.of_tenant(tenant or self.request.user.pk).prefetch_related("messages")
        conversations = Conversation.objects.visible_to(self.request.user).select_related("created_by")
        if tenant is not None:
            conversations = conversations.of_tenant(tenant)
        user_id = user_id_filter(self.request)
        return conversations.filter(user_id=user_id) if user_id else conversations

    def get_serializer_class(self):
        if self.action == "create":
            return ConversationCreateSerializer
        if self.action == "retrieve":
            return ConversationDetailSerializer
        return ConversationSerializer

    @extend_schema(
        parameters=[TENANT_PARAMETER], responses={200: ConversationDetailSerializer, **errors(400, 401, 403, 404)}
    )
    def retrieve(self, request: Request, *args, **kwargs) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        request=ConversationCreateSerializer, responses={201: ConversationDetailSerializer, **errors(400, 401, 429)}
    )
    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = ConversationCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            conversation = conversation_create(
                user_id=data["user_id"],
                public_id=data.get("conversation_id"),
                title=data.get("title", ""),
                created_by=request.user,
            )
        except ConversationExists:
            raise ValidationError({"conversation_id": [_("A conversation with this id already exists.")]}) from None
        return Response(ConversationDetailSerializer(conversation).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    list=extend_schema(
        parameters=[TENANT_PARAMETER],
        responses={200: KnowledgeDocumentSerializer(many=True), **errors(400, 401, 403)},
    ),
    retrieve=extend_schema(responses={200: KnowledgeDocumentSerializer, **errors(401, 404)}),
    update=extend_schema(responses={200: KnowledgeDocumentSerializer, **errors(400, 401, 403, 404, 429)}),
    partial_update=extend_schema(responses={200: KnowledgeDocumentSerializer, **errors(400, 401, 403, 404, 429)}),
    destroy=extend_schema(responses={204: None, **errors(401, 403, 404, 429)}),
)
class KnowledgeDocumentViewSet(viewsets.ModelViewSet):
    """Upload text or Markdown (JSON `content` or a multipart `file`); each change is re-indexed by a task.

    Within the tenant's bounds (KNOWLEDGE_MAX_DOCUMENTS_PER_TENANT, KNOWLEDGE_MAX_BYTES_PER_TENANT),
    the write throttle and the unfinished-task limit (every upload and change queues an indexing).
    """

    serializer_class = KnowledgeDocumentSerializer
    pagination_class = NewestFirstPagination
    throttle_classes = [WriteRateThrottle]
    throttle_scopes = dict.fromkeys(("create", "update", "partial_update", "destroy", "reindex"), "knowledge_write")

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no real caller
            return KnowledgeDocument.objects.none()
        documents = KnowledgeDocument.objects.visible_to(self.request.user)
        tenant = tenant_filter(self.request) if self.action == "list" else None
        if tenant is not None:
            documents = documents.of_tenant(tenant)
        user_id = user_id_filter(self.request)
        return documents.filter(user_id=user_id) if user_id else documents

    def get_object(self) -> KnowledgeDocument:
        document = super().get_object()
        if (
            self.action != "retrieve"
            and not KnowledgeDocument.objects.changeable_by(self.request.user).filter(pk=document.pk).exists()
        ):
            raise PermissionDenied(_("This document is another tenant's: changing it needs conversations.change_all."))
        return document

    def _within_task_limit(self) -> None:
        try:
            # IsAuthenticated (the API's default) let the request in: never the anonymous user.
            ensure_below_unfinished_limit(user=cast("AbstractUser", self.request.user))
        except TooManyUnfinishedTasks as refused:
            raise too_many_tasks(refused) from None

    def _saved(self, **fields) -> KnowledgeDocument:
        try:
            return knowledge_document_save(**fields)
        except KnowledgeQuotaExceeded as full:
            message = (
                _("Your knowledge base holds %(used)d documents, the limit: delete some first.")
                if full.what == "documents"
                else _("This would make your knowledge base %(used)d bytes; the limit is %(limit)d. Delete some first.")
            )
            raise QuotaExceeded(message % {"used": full.used, "limit": full.limit}) from None

    def _indexed_response(self, document: KnowledgeDocument, code: int, *, content_changed: bool) -> Response:
        indexing = knowledge_schedule_reindex(document, requested_by=self.request.user, content_changed=content_changed)
        # None (not saved) answers null: the indexing could not be queued.
        document.index_task_id = indexing.task_id  # type: ignore[assignment]
        return Response(KnowledgeDocumentSerializer(document).data, status=code)

    @extend_schema(
        request=KnowledgeUploadSerializer, responses={201: KnowledgeDocumentSerializer, **errors(400, 401, 403, 429)}
    )
    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = KnowledgeUploadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        self._within_task_limit()
        document = self._saved(created_by=request.user, **serializer.validated_data)
        return self._indexed_response(document, status.HTTP_201_CREATED, content_changed=True)

    def update(self, request: Request, *args, **kwargs) -> Response:
        document = self.get_object()
        serializer = KnowledgeDocumentSerializer(document, data=request.data, partial=kwargs.get("partial", False))
        serializer.is_valid(raise_exception=True)
        self._within_task_limit()
        document = self._saved(document=document, **serializer.validated_data)
        return self._indexed_response(document, status.HTTP_200_OK, content_changed=True)

    @extend_schema(request=None, responses={202: KnowledgeDocumentSerializer, **errors(401, 403, 404, 409, 429)})
    @action(detail=True, methods=["post"])
    def reindex(self, request: Request, *args, **kwargs) -> Response:
        """Rebuild the document's chunks (e.g. after changing KNOWLEDGE_CHUNK_SIZE); 409 while one is in hand."""
        document = self.get_object()
        self._within_task_limit()
        indexing = knowledge_schedule_reindex(document, requested_by=request.user)
        if indexing.joined and indexing.task_id is not None:  # a joined indexing always has its id
            raise IndexingInHand(indexing.task_id)
        # None (not saved) answers null: the indexing could not be queued.
        document.index_task_id = indexing.task_id  # type: ignore[assignment]
        return Response(KnowledgeDocumentSerializer(document).data, status=status.HTTP_202_ACCEPTED)


class IndexingInHand(Conflict):
    """409 whose body names the indexing task already queued or running."""

    default_code = "indexing_in_progress"

    def __init__(self, task_id: str) -> None:
        super().__init__(
            _(
                "An indexing of this document is already queued or running (task %(task_id)s); it will index the "
                "document as it is now."
            )
            % {"task_id": task_id}
        )
        self.extra = {"index_task_id": task_id}
