"""AI reply generation (queue `ai_high_priority`)."""

from celery import shared_task

from tasks_app.tasks.base import BaseTaskWithRetry


@shared_task(
    bind=True,
    base=BaseTaskWithRetry,
    name="tasks_app.tasks.ai_tasks.generate_ai_response",
    soft_time_limit=300,
    time_limit=600,
)
def generate_ai_response(
    self,
    conversation_id: str,
    user_message: str,
    temperature: float = 0.7,
    user_id: str | None = None,
    callback_url: str | None = None,
) -> dict:
    """Stand-in with the real signature until the conversations service lands (issue 4)."""
    return {
        "conversation_id": conversation_id,
        "response": f"(offline) {user_message}",
        "tokens": {"prompt": 0, "completion": 0, "total": 0},
        "cost": 0.0,
        "model": "offline-stand-in",
    }
