"""Reads of usage against budgets, for GET /api/v1/usage and the admin's usage page."""

from django.db.models import Count, Q

from conversations.budgets import budget_standings
from conversations.models import BudgetScope
from tasks_app.models import TaskRecord, TaskState

AI_TASK = "tasks_app.tasks.ai_tasks.generate_ai_response"


def replies_in_hand(*, tenant_id: int, user_id: str = "") -> dict:
    """The tenant's (or its chat user's) AI replies waiting (queued, re-queued) and running."""
    records = TaskRecord.objects.filter(submitted_by_id=tenant_id, task_name=AI_TASK).unfinished()
    if user_id:
        records = records.filter(user_id=user_id)
    running = Q(state=TaskState.STARTED)
    return records.aggregate(waiting=Count("id", filter=~running), running=Count("id", filter=running))


def usage_document(*, tenant, user_id: str = "") -> dict:
    standings = budget_standings(tenant_id=tenant.pk, user_id=user_id)
    by_scope = {standing.scope: standing.as_dict() for standing in standings}
    return {
        "tenant": tenant.get_username(),
        "user_id": user_id or None,
        "api_user": by_scope.get(BudgetScope.API_USER),
        "chat_user": by_scope.get(BudgetScope.CHAT_USER) if user_id else None,
        "resets_at": {
            "day": standings[0].day_resets_at.isoformat() if standings else None,
            "month": standings[0].month_resets_at.isoformat() if standings else None,
        },
        "replies": replies_in_hand(tenant_id=tenant.pk, user_id=user_id),
    }
