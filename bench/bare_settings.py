"""Django settings of the baseline: plain Celery + django-celery-results, nothing of CLAW.AI.

Same database as the system (DATABASE_URL) and the same connection reuse, but none of the
system's apps, so no task record is written when a task is published.
"""

import environ

env = environ.Env()

SECRET_KEY = "bench-baseline-only"  # noqa: S105 (a throwaway process on loopback, no sessions)
DEBUG = False
INSTALLED_APPS = ["django_celery_results"]
DATABASES = {"default": env.db_url("DATABASE_URL")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DJANGO_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
