"""Registers the conversation and knowledge endpoints on the project's router."""

from claw_ai.api import router
from conversations.api.generation import ReplyGenerationViewSet
from conversations.api.usage import UsageViewSet
from conversations.api.views import ConversationViewSet, KnowledgeDocumentViewSet

router.register("conversations", ConversationViewSet, basename="conversation")
router.register("knowledge/documents", KnowledgeDocumentViewSet, basename="knowledge-document")
# The seed puts reply generation among the task endpoints: /api/v1/tasks/ai/generate.
router.register("tasks/ai", ReplyGenerationViewSet, basename="tasks-ai")
router.register("usage", UsageViewSet, basename="usage")
