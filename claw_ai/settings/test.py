"""Settings for `make test`: real PostgreSQL, Redis and workers, nothing eager."""

import ipaddress
from urllib.parse import urlsplit, urlunsplit

from .base import *  # noqa: F403
from .base import CELERY_BROKER_URL, REDIS_URL, env

# Tests use their own Redis database number, so a developer's queued work is never touched; each
# pytest-xdist process (gw0, gw1, ...) the next one, as pytest-django gives each its own database.
# The workers, beat and Flower a test starts inherit PYTEST_XDIST_WORKER, so they share its number.
REDIS_TEST_DB = env.int("REDIS_TEST_DB", default=9) + int(env("PYTEST_XDIST_WORKER", default="gw0")[2:] or 0)


def _with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}")) if parts.scheme.startswith("redis") else url


REDIS_URL = _with_db(REDIS_URL, REDIS_TEST_DB)
CELERY_BROKER_URL = _with_db(CELERY_BROKER_URL, REDIS_TEST_DB)
CACHES = {"default": {"BACKEND": "claw_ai.cache.RedisCache", "LOCATION": REDIS_URL}}

# The tests' webhook receivers listen on loopback (tests of the address rules set their own).
WEBHOOK_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Tests run without collected static files: WhiteNoise finds them in the apps (as under DEBUG), so
# the web server a test starts serves the chat page's script and style, and no handler a test client
# builds warns "No directory at: staticfiles/".
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True

# The AI task's 10/m rate limit (cluster-wide) would make end-to-end tests wait minutes, so test workers run
# without it; one started with CLAW_TEST_KEEP_RATE_LIMITS=1 keeps it, to prove the limit applies.
if not env.bool("CLAW_TEST_KEEP_RATE_LIMITS", default=False):
    CELERY_TASK_ANNOTATIONS = {}
    CLUSTER_TASK_RATE_LIMITS = {}

# Other tests submit hundreds of tasks as one user (50 concurrent clients among them): keep the
# per-user limits out of their way (whatever .env says): no submit throttling (a huge rate would
# still keep a timestamp per request), a very high unfinished-task limit. The tests of the limits
# set them with the settings fixture.
MAX_UNFINISHED_TASKS_PER_USER = 1_000_000
REST_FRAMEWORK = {
    **REST_FRAMEWORK,  # noqa: F405
    "DEFAULT_THROTTLE_RATES": {"ai_generate": None, "task_retry": None},
}

# The offline provider answers at once in tests (a test of streaming sets its own pace).
LLM_OFFLINE_STREAM_DELAY_MS = env.int("LLM_OFFLINE_STREAM_DELAY_MS", default=0)
