"""Registers the conversation and knowledge endpoints on the project's router."""

from claw_ai.api import router
from conversations.api.views import ConversationViewSet, KnowledgeDocumentViewSet

router.register("conversations", ConversationViewSet, basename="conversation")
router.register("knowledge/documents", KnowledgeDocumentViewSet, basename="knowledge-document")
