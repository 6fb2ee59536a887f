"""Conversations (/api/v1/conversations/) and knowledge documents (/api/v1/knowledge/documents/).

Every caller is an authenticated API user. A conversation or document is created by one API user
for one chat user (`user_id`); non-staff callers see and change only what they created.
"""

from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from claw_ai.errors import ErrorSerializer
from conversations.api.serializers import (
    ConversationCreateSerializer,
    ConversationDetailSerializer,
    ConversationSerializer,
    KnowledgeDocumentSerializer,
    KnowledgeUploadSerializer,
)
from conversations.knowledge import knowledge_document_save, knowledge_schedule_reindex
from conversations.models import Conversation, KnowledgeDocument
from conversations.services import conversation_create

# Ids in URLs: anything but "/", "." (format suffixes) and NUL (PostgreSQL text cannot hold it).
LOOKUP_VALUE = r"[^/.\x00]+"


def user_id_filter(request: Request) -> str | None:
    """The optional ?user_id= filter; NUL would make PostgreSQL fail the query (a 500), so it is a 400."""
    user_id = request.query_params.get("user_id")
    if user_id is not None and "\x00" in user_id:
        raise ValidationError({"user_id": [_("Null characters are not allowed.")]})
    return user_id or None


ERROR_DESCRIPTIONS = {
    400: "Invalid input: field errors under `errors` (none when the body could not be parsed).",
    401: "Not authenticated.",
    404: "No such object (or not yours).",
}


def errors(*codes: int) -> dict:
    """Error answers, in the API's one shape (claw_ai.errors)."""
    return {code: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[code]) for code in codes}


@extend_schema_view(list=extend_schema(responses={200: ConversationSerializer(many=True), **errors(401)}))
class ConversationViewSet(
    mixins.CreateModelMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Create, list (your own; staff: all; `?user_id=` filters) and show conversations with their messages."""

    lookup_field = "public_id"
    lookup_url_kwarg = "conversation_id"
    lookup_value_regex = LOOKUP_VALUE

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no real caller
            return Conversation.objects.none()
        conversations = Conversation.objects.visible_to(self.request.user)
        if self.action == "retrieve":
            return conversations.prefetch_related("messages")
        user_id = user_id_filter(self.request)
        return conversations.filter(user_id=user_id) if user_id else conversations

    def get_serializer_class(self):
        if self.action == "create":
            return ConversationCreateSerializer
        if self.action == "retrieve":
            return ConversationDetailSerializer
        return ConversationSerializer

    @extend_schema(responses={200: ConversationDetailSerializer, **errors(401, 404)})
    def retrieve(self, request: Request, *args, **kwargs) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        request=ConversationCreateSerializer, responses={201: ConversationDetailSerializer, **errors(400, 401)}
    )
    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = ConversationCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        conversation = conversation_create(
            user_id=data["user_id"],
            public_id=data.get("conversation_id"),
            title=data.get("title", ""),
            created_by=request.user,
        )
        return Response(ConversationDetailSerializer(conversation).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    list=extend_schema(responses={200: KnowledgeDocumentSerializer(many=True), **errors(401)}),
    retrieve=extend_schema(responses={200: KnowledgeDocumentSerializer, **errors(401, 404)}),
    update=extend_schema(responses={200: KnowledgeDocumentSerializer, **errors(400, 401, 404)}),
    partial_update=extend_schema(responses={200: KnowledgeDocumentSerializer, **errors(400, 401, 404)}),
    destroy=extend_schema(responses={204: None, **errors(401, 404)}),
)
class KnowledgeDocumentViewSet(viewsets.ModelViewSet):
    """Upload text or Markdown (JSON `content` or a multipart `file`); each change is re-indexed by a task."""

    serializer_class = KnowledgeDocumentSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no real caller
            return KnowledgeDocument.objects.none()
        documents = KnowledgeDocument.objects.visible_to(self.request.user)
        user_id = user_id_filter(self.request)
        return documents.filter(user_id=user_id) if user_id else documents

    def _indexed_response(self, document: KnowledgeDocument, code: int) -> Response:
        task_id = knowledge_schedule_reindex(document, requested_by=self.request.user)
        return Response({**KnowledgeDocumentSerializer(document).data, "index_task_id": task_id}, status=code)

    @extend_schema(request=KnowledgeUploadSerializer, responses={201: KnowledgeDocumentSerializer, **errors(400, 401)})
    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = KnowledgeUploadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        document = knowledge_document_save(created_by=request.user, **serializer.validated_data)
        return self._indexed_response(document, status.HTTP_201_CREATED)

    def update(self, request: Request, *args, **kwargs) -> Response:
        document = self.get_object()
        serializer = KnowledgeDocumentSerializer(document, data=request.data, partial=kwargs.get("partial", False))
        serializer.is_valid(raise_exception=True)
        document = knowledge_document_save(document=document, **serializer.validated_data)
        return self._indexed_response(document, status.HTTP_200_OK)

    @extend_schema(request=None, responses={202: KnowledgeDocumentSerializer, **errors(401, 404)})
    @action(detail=True, methods=["post"])
    def reindex(self, request: Request, *args, **kwargs) -> Response:
        """Rebuild the document's chunks (e.g. after changing KNOWLEDGE_CHUNK_SIZE)."""
        return self._indexed_response(self.get_object(), status.HTTP_202_ACCEPTED)
