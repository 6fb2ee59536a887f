"""POST /api/v1/tasks/ai/generate (the seed's path): submit an AI reply for one conversation turn.

It lives with the chat domain, which uses the task system, not in tasks_app, which never imports
the chat domain: the conversation is looked up (or created) in the caller's tenant here, then the
task is published through tasks_app.services.
"""

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from claw_ai.errors import ServiceUnavailable
from claw_ai.throttles import WriteRateThrottle
from conversations.api.serializers import AIGenerateSerializer
from conversations.api.usage import BudgetExceededError
from conversations.budgets import BudgetExceeded
from conversations.services import ConversationForbidden, submit_ai_generation
from tasks_app.api.errors import too_many_tasks
from tasks_app.api.serializers import TaskAcceptedSerializer
from tasks_app.api.views import errors
from tasks_app.models import TaskState
from tasks_app.services import BrokerUnavailable, TooManyUnfinishedTasks


class ReplyAcceptedSerializer(TaskAcceptedSerializer):
    superseded = serializers.ListField(
        child=serializers.CharField(),
        help_text=gettext_lazy("With supersede: the earlier replies of the conversation that were cancelled."),
    )


class ReplyGenerationViewSet(viewsets.GenericViewSet):
    """Submit an AI reply generation."""

    permission_classes = [permissions.IsAuthenticated]
    serializer_class = AIGenerateSerializer
    throttle_classes = [WriteRateThrottle]
    throttle_scopes = {"ai_generate": "ai_generate"}

    @extend_schema(
        summary="Submit an AI reply generation",
        request=AIGenerateSerializer,
        responses={202: ReplyAcceptedSerializer, **errors(400, 401, 403, 429, 503)},
    )
    @action(detail=False, methods=["post"], url_path="generate", name="AI generate")
    def ai_generate(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            record = submit_ai_generation(**serializer.validated_data, submitted_by=request.user)
        except BrokerUnavailable:
            raise ServiceUnavailable(_("The task broker cannot be reached; nothing was queued. Try again.")) from None
        except ConversationForbidden:
            raise PermissionDenied(_("This conversation belongs to another user.")) from None
        except TooManyUnfinishedTasks as refused:
            raise too_many_tasks(refused) from None
        except BudgetExceeded as refused:
            raise BudgetExceededError(refused) from None
        body = {
            "task_id": record.task_id,
            "status": TaskState.PENDING,
            "message": _("AI response generation task submitted"),
            "superseded": record.superseded_task_ids,
        }
        return Response(ReplyAcceptedSerializer(body).data, status=status.HTTP_202_ACCEPTED)
