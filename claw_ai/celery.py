"""The Celery app of CLAW.AI, configured from Django settings (the CELERY_ namespace)."""

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "claw_ai.settings.development")

# Every task of the system derives from ClawTask (record-aware publishing, cancellation check).
celery_app = Celery("claw_ai", task_cls="tasks_app.tasks.base:ClawTask")
celery_app.config_from_object("django.conf:settings", namespace="CELERY")
# Task modules live in tasks_app.tasks; autodiscovery imports the package, which imports them.
celery_app.autodiscover_tasks(["tasks_app"])
# `celery -A claw_ai` looks for `app` or `celery`.
app = celery_app


if os.environ.get("LOG_FORMAT") == "json":

    @signals.setup_logging.connect
    def use_django_logging(**_kwargs) -> None:
        """LOG_FORMAT=json: the worker logs through Django's LOGGING (JSON lines), not Celery's formats."""
        from logging.config import dictConfig

        from django.conf import settings

        dictConfig(settings.LOGGING)
