"""Settings shared by every environment, read from the environment (12-factor).

Every variable is listed, with a comment, in `.env.example`.
"""

import ipaddress
import os
from pathlib import Path

import environ
from kombu import Exchange, Queue

from claw_ai.settings.limits import number, optional_limit, parse_rate

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
# A .env file in the project root is read when present; real environment variables win. (Only when
# present: django-environ logs ".env not found" otherwise, which Flower prints at every start.)
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def secret(name: str, default: str = "") -> str:
    """A secret, verbatim. django-environ reads a value starting with "$" as the name of another
    variable to expand, and a generated key or password may well start with one. Empty counts as
    unset (`NAME=` in .env, as .env.example leaves the secrets compose must refuse without)."""
    return os.environ.get(name) or default


# --- Django core -----------------------------------------------------------------------
SECRET_KEY = secret("DJANGO_SECRET_KEY", default="django-insecure-development-only-key")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served with ours (SPECTACULAR_SETTINGS)
    "django_celery_results",
    "django_celery_beat",
    "tasks_app",
    "conversations",
    "monitoring",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # X-Request-ID in and out; the id goes on log lines and on the tasks a request publishes.
    "monitoring.logs.RequestIdMiddleware",
    # A span per request when OTEL_EXPORTER_OTLP_ENDPOINT is set; removes itself otherwise.
    "monitoring.tracing.TracingMiddleware",
    "claw_ai.middleware.RequestBodyLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "claw_ai.urls"
WSGI_APPLICATION = "claw_ai.wsgi.application"
ASGI_APPLICATION = "claw_ai.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# DATABASE_URL is required: a missing database is an error, not a silent SQLite fallback.
DATABASES = {"default": env.db_url("DATABASE_URL")}
# Workers hold connections for hours: check them before use so a dropped one is replaced.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DJANGO_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# A threads worker runs up to ~100 tasks at once. With a pool size set, they share that many
# connections from psycopg's pool (Django 5.1+) instead of holding one each (PostgreSQL's
# default max_connections is 100). Pooled connections are not persistent: CONN_MAX_AGE is 0.
DB_POOL_MAX_SIZE = env.int("DJANGO_DB_POOL_MAX_SIZE", default=0)
if DB_POOL_MAX_SIZE:
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "pool": {"min_size": 1, "max_size": DB_POOL_MAX_SIZE, "timeout": env.float("DJANGO_DB_POOL_TIMEOUT", 30)}
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL")
# Django's Redis cache with one shared client and a one-round-trip counter (claw_ai.cache).
CACHES = {"default": {"BACKEND": "claw_ai.cache.RedisCache", "LOCATION": REDIS_URL}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env("DJANGO_TIME_ZONE", default="UTC")
# Times to the second in the admin, in each language (claw_ai/formats).
FORMAT_MODULE_PATH = ["claw_ai.formats"]
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Bound what one request can make the server hold in memory (413 above it, for every endpoint).
MAX_REQUEST_BODY_BYTES = env.int("MAX_REQUEST_BODY_BYTES", default=2 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES
# Deepest nesting of arrays and objects a JSON body may have (400 past it): Python's decoder
# recurses per level, and ~1,000 levels would crash the request (claw_ai.parsers).
API_MAX_JSON_DEPTH = env.int("API_MAX_JSON_DEPTH", default=32)

# Worker logs carry task ids, sizes and timings, not users' message text (return values, error
# messages, arguments): claw_ai.log_redaction. LOG_MESSAGE_TEXT=true shows the text, for debugging.
LOG_MESSAGE_TEXT = env.bool("LOG_MESSAGE_TEXT", default=False)
# Celery's loggers that put task results, arguments or exceptions into their records.
CELERY_TASK_LOGGERS = ("celery.app.trace", "celery.worker.strategy", "celery.worker.request")
# With "json", every process logs one JSON object a line, with task_id, task_name, queue,
# conversation_id and request_id where there is one (monitoring.logs). Workers read it from
# the environment (claw_ai.celery), so set it there, not only in .env.
LOG_FORMAT = env("LOG_FORMAT", default="plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "no_message_text": {"()": "claw_ai.log_redaction.MessageTextFilter"},
        "context": {"()": "monitoring.logs.ContextFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "monitoring.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["context"] if LOG_FORMAT == "json" else [],
        }
    },
    "root": {"handlers": ["console"], "level": env("DJANGO_LOG_LEVEL", default="INFO")},
    # On the loggers, not on a handler: the worker replaces the root logger's handlers with its own.
    "loggers": {name: {"filters": [] if LOG_MESSAGE_TEXT else ["no_message_text"]} for name in CELERY_TASK_LOGGERS},
}

# --- REST framework --------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "claw_ai.authentication.TokenAuthentication",  # DRF's, with a cheaper lookup
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Every error of every endpoint is JSON {"message", "code", "errors"?} (claw_ai.errors).
    "EXCEPTION_HANDLER": "claw_ai.errors.json_error_handler",
    # DRF's three defaults, its JSON parser refusing deep nesting (claw_ai.parsers): knowledge
    # uploads come as multipart, and every endpoint takes a form as well as JSON.
    "DEFAULT_PARSER_CLASSES": [
        "claw_ai.parsers.DepthLimitedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "claw_ai.renderers.BrowsableAPIRenderer",  # DRF's, its form kept after a submission
    ],
    # Writes per API user (claw_ai.throttles): 429 with Retry-After past them; empty = no limit.
    "DEFAULT_THROTTLE_RATES": {
        "ai_generate": env("AI_GENERATE_THROTTLE_RATE", default="120/min") or None,
        "task_retry": env("TASK_RETRY_THROTTLE_RATE", default="60/min") or None,
        "task_cancel": env("TASK_CANCEL_THROTTLE_RATE", default="120/min") or None,
        "conversation_create": env("CONVERSATION_CREATE_THROTTLE_RATE", default="120/min") or None,
        "knowledge_write": env("KNOWLEDGE_WRITE_THROTTLE_RATE", default="30/min") or None,
        "worker_control": env("WORKER_CONTROL_THROTTLE_RATE", default="10/min") or None,
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CLAW.AI task system",
    "DESCRIPTION": "Submit, watch, cancel and retry the asynchronous work of the CLAW.AI chat backend.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # The schema and the docs page are for API users, like every other endpoint (default: public).
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # The docs page loads Swagger UI (and Redoc) from our static files, not a CDN: it works offline,
    # and no third-party script runs on a page that holds an API user's session.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The live-reply stream is a plain async view, which drf-spectacular cannot see: a hook adds it.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "conversations.api.stream_schema.add_reply_stream",
    ],
}

# --- Celery ------------------------------------------------------------------------------
# https://docs.celeryq.dev/en/stable/userguide/configuration.html
# Every CELERY_* name below is the lower-case Celery setting without the prefix.

# The broker is Redis unless CELERY_BROKER_URL names another. RabbitMQ (amqp://) is first class:
# the same queues, priorities through x-max-priority (below), and it returns a dead consumer's
# unacknowledged messages itself. Run it with consumer_timeout off (compose's rabbitmq service):
# a worker holds a delayed task unacknowledged until its eta, longer than the default 30 minutes.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
# Seed priority 9 is the highest; Redis lists run 0 first, so this transport flips the order.
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT = "claw_ai.broker:PriorityRedisTransport"

# Results go to PostgreSQL through django-celery-results; the task records keep in step.
CELERY_RESULT_BACKEND = "tasks_app.result_backend:TaskRecordBackend"
# Store task name, args, worker and traceback with each result.
CELERY_RESULT_EXTENDED = True
# Record STARTED, so "running" is visible and runtime can be measured.
CELERY_TASK_TRACK_STARTED = True
# Results are kept as long as task records; the cleanup job removes both.
CELERY_RESULT_EXPIRES = None

# JSON only: no pickle, so a message can never carry code.
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_ENABLE_UTC = True

# The four queues of the seed. Tasks are routed by the module they live in.
QUEUE_AI = "ai_high_priority"
QUEUE_KNOWLEDGE = "knowledge_default"
QUEUE_NOTIFICATION = "notification_default"
QUEUE_DEFAULT = "default"
TASK_QUEUES = (QUEUE_AI, QUEUE_KNOWLEDGE, QUEUE_NOTIFICATION, QUEUE_DEFAULT)
CELERY_TASK_QUEUES = [Queue(name, Exchange(name), routing_key=name) for name in TASK_QUEUES]
CELERY_TASK_DEFAULT_QUEUE = QUEUE_DEFAULT
CELERY_TASK_DEFAULT_EXCHANGE = QUEUE_DEFAULT
CELERY_TASK_DEFAULT_ROUTING_KEY = QUEUE_DEFAULT
CELERY_TASK_ROUTES = {
    "tasks_app.tasks.ai_tasks.*": {"queue": QUEUE_AI},
    "tasks_app.tasks.knowledge_tasks.*": {"queue": QUEUE_KNOWLEDGE},
    "tasks_app.tasks.notification_tasks.*": {"queue": QUEUE_NOTIFICATION},
    "tasks_app.tasks.maintenance_tasks.*": {"queue": QUEUE_DEFAULT},
}

# Priorities 0-9, 9 the highest (the seed's meaning). A task sent without one sits in the middle.
TASK_PRIORITY_MIN, TASK_PRIORITY_MAX = 0, 9
CELERY_TASK_DEFAULT_PRIORITY = 5
# RabbitMQ orders natively (higher first) once queues declare a maximum.
CELERY_TASK_QUEUE_MAX_PRIORITY = TASK_PRIORITY_MAX

# Time limits: the soft limit raises inside the task so it can stop cleanly; the hard one kills it.
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=300)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=600)
# The longest delay a client may ask for (countdown / eta), in seconds.
TASK_MAX_COUNTDOWN = env.int("TASK_MAX_COUNTDOWN", default=7 * 24 * 3600)

# Redis redelivers any message unacknowledged for longer than the visibility timeout. A worker
# holds a delayed task unacknowledged until its eta, then runs it, so the timeout must exceed the
# longest countdown plus the longest run, or delayed tasks run twice.
REDIS_VISIBILITY_TIMEOUT = TASK_MAX_COUNTDOWN + CELERY_TASK_TIME_LIMIT + 3600
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": REDIS_VISIBILITY_TIMEOUT,
    # One list per priority level (not the default four buckets), read in priority order.
    "priority_steps": list(range(TASK_PRIORITY_MIN, TASK_PRIORITY_MAX + 1)),
    "sep": ":",
    "queue_order_strategy": "priority",
    # kombu drops a BRPOP connection whose reply is overdue by this much (a half-open socket after
    # a failover or a restart) and reconnects: a consumer is back within ~2x this plus 1 s.
    "health_check_interval": 10,
}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"visibility_timeout": REDIS_VISIBILITY_TIMEOUT}
CELERY_VISIBILITY_TIMEOUT = REDIS_VISIBILITY_TIMEOUT
# Keep retrying to reach the broker when a worker starts before Redis does.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# The worker pool is chosen on the command line (Procfile, compose), not here: Celery's CLI
# treats `-P prefork` as "not given" once worker_pool is configured, so a setting would silently
# turn every prefork worker into threads. Why threads there: see the Procfile.

# Acknowledge after the task ran, and hand a task back when its process dies (SIGKILL, OOM):
# a task accepted is finished or failed visibly, never dropped. Tasks must be safe to run twice.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Long AI tasks: a worker takes one message per free slot, so others are not stuck behind it.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes every database connection after every task unless this is set:
# each task then pays for a new PostgreSQL backend (and its first-use trigger compilation).
# With it set, the fixup closes them only every this many tasks, and tasks_app.connections
# applies Django's own rules around each task instead (CONN_MAX_AGE, CONN_HEALTH_CHECKS; a
# pooled connection goes back to the pool).
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
# Retry result writes when PostgreSQL blips, instead of losing the outcome.
CELERY_RESULT_BACKEND_ALWAYS_RETRY = True
CELERY_RESULT_BACKEND_MAX_RETRIES = 10
# Events feed Flower; task-sent events make queued tasks visible there too.
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
# pool_restart over remote control is refused unless this is on (and works on prefork only).
CELERY_WORKER_POOL_RESTARTS = True
# With late acks, a task still running when the broker connection drops is redelivered; cancel
# the local run so it does not run twice at once.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True

# Retry policy of BaseTaskWithRetry (tasks_app.tasks.base).
TASK_RETRY_MAX_RETRIES = env.int("TASK_RETRY_MAX_RETRIES", default=3)
TASK_RETRY_BACKOFF_MAX = 600

# Rate limits by task name, per worker instance as Celery counts them ("10/m" here means 10 a
# minute for each worker process: four workers run 40). For limits that must hold for the whole
# cluster use CLUSTER_TASK_RATE_LIMITS below. None set by default.
TASK_RATE_LIMITS: dict[str, str] = {}
CELERY_TASK_ANNOTATIONS = {name: {"rate_limit": limit} for name, limit in TASK_RATE_LIMITS.items() if limit}
# Rate limits that hold for the whole cluster, however many workers run (tasks_app.cluster_limits):
# (count, window seconds) by task name. "At most 10 AI tasks a minute" means 10, not 10 per worker.
CLUSTER_TASK_RATE_LIMITS = {
    "tasks_app.tasks.ai_tasks.generate_ai_response": parse_rate(
        "AI_TASK_RATE_LIMIT", env("AI_TASK_RATE_LIMIT", default="10/m")
    ),
}

# Schedules live in the database and are edited in the admin. django-celery-beat's scheduler,
# sending only while it holds a lease in Redis: a second beat by accident stands by instead of
# sending every job twice, and takes over within BEAT_LEASE_SECONDS when the holder dies.
CELERY_BEAT_SCHEDULER = "tasks_app.beat:LeasedDatabaseScheduler"
BEAT_LEASE_SECONDS = env.float("BEAT_LEASE_SECONDS", default=10)

# --- Flower ----------------------------------------------------------------------------
FLOWER_USER = env("FLOWER_USER", default="admin")
FLOWER_PASSWORD = secret("FLOWER_PASSWORD")

# --- Task API (tasks_app, issue 3) ------------------------------------------------------------
# Longest user_message /ai/generate accepts, in characters (a bound on what one request can queue).
AI_USER_MESSAGE_MAX_LENGTH = env.int("AI_USER_MESSAGE_MAX_LENGTH", default=10_000)
# Seconds a task may sit PENDING before /status explains why (no worker on its queue, eta, ...).
TASK_PENDING_EXPLAIN_AFTER = env.float("TASK_PENDING_EXPLAIN_AFTER", default=5.0)
# Seconds /workers and /status wait for workers' remote-control replies (workers that miss it are named).
WORKER_INSPECT_TIMEOUT = env.float("WORKER_INSPECT_TIMEOUT", default=0.8)
# Seconds the lifeline and the lost-task re-send wait for every worker to say what it holds
# (tasks_app.lifeline): longer than /workers', since a worker that misses it may see its task run twice.
LIFELINE_INSPECT_TIMEOUT = env.float("LIFELINE_INSPECT_TIMEOUT", default=2.0)
# Age after which /status and /stats refresh the live workers in the background (they never wait;
# they answer with the last discovery and its time).
WORKER_DISCOVERY_CACHE_SECONDS = env.int("WORKER_DISCOVERY_CACHE_SECONDS", default=10)
# Most unfinished (PENDING/STARTED/RETRY) tasks one non-staff API user may have: /ai/generate and
# /retry answer 429 past it, so one client cannot fill the broker (0 = no limit; staff are exempt).
MAX_UNFINISHED_TASKS_PER_USER = env.int("MAX_UNFINISHED_TASKS_PER_USER", default=1000)

# --- AI replies, knowledge base, notifications (conversations app, issue 4) -----------------
# Which LLM provider answers: "offline" (embedded, deterministic, no key or network) or "openai"
# (any OpenAI-compatible Chat Completions endpoint: OpenAI, DeepSeek, Qwen, Ollama, vLLM).
LLM_PROVIDER = env("LLM_PROVIDER", default="offline")
# Base URL of the OpenAI-compatible API; empty means the SDK's default (api.openai.com).
LLM_BASE_URL = env("LLM_BASE_URL", default="")
LLM_API_KEY = secret("LLM_API_KEY")
LLM_MODEL = env("LLM_MODEL", default="gpt-4o-mini")
# Seconds one provider request may take before it counts as a (retried) timeout.
LLM_TIMEOUT = env.float("LLM_TIMEOUT", default=60.0)
# Milliseconds the offline provider waits between the words it streams (0: all at once).
LLM_OFFLINE_STREAM_DELAY_MS = env.int("LLM_OFFLINE_STREAM_DELAY_MS", default=40)

# Live replies (conversations.reply_streams): each AI reply's text is appended to a Redis stream
# per task, written at most every STREAM_FLUSH_MS, kept STREAM_RETENTION_SECONDS after the task
# ended and at most STREAM_MAX_EVENTS entries long; GET /api/v1/tasks/stream/{id} serves it as
# Server-Sent Events with a comment line every STREAM_KEEPALIVE_SECONDS.
STREAM_FLUSH_MS = env.int("STREAM_FLUSH_MS", default=50)
STREAM_RETENTION_SECONDS = env.int("STREAM_RETENTION_SECONDS", default=3600)
STREAM_MAX_EVENTS = env.int("STREAM_MAX_EVENTS", default=10_000)
STREAM_KEEPALIVE_SECONDS = env.float("STREAM_KEEPALIVE_SECONDS", default=15.0)
# Redis connections of a web process's open streams (claw_ai.stream_readers): at most
# STREAM_READERS blocking readers, each waiting on many streams at once, and at most
# STREAM_COMMAND_CONNECTIONS for the short reads (a stream's start, its end) and wake-ups.
STREAM_READERS = env.int("STREAM_READERS", default=4)
STREAM_COMMAND_CONNECTIONS = env.int("STREAM_COMMAND_CONNECTIONS", default=8)
# Instructions sent first in every prompt.
LLM_SYSTEM_PROMPT = env("LLM_SYSTEM_PROMPT", default="You are CLAW.AI, a helpful assistant.")
# USD per 1,000 tokens by model, {"model": {"prompt": x, "completion": y}}; LLM_PRICES (JSON)
# entries replace or add to these. A model missing from the table costs 0 (and is logged).
LLM_PRICES = {
    "gpt-4o-mini": {"prompt": 0.00015, "completion": 0.0006},
    "gpt-4o": {"prompt": 0.0025, "completion": 0.01},
    "deepseek-chat": {"prompt": 0.00027, "completion": 0.0011},
    "offline-echo": {"prompt": 0.0, "completion": 0.0},
} | env.json("LLM_PRICES", default={})
# --- Provider limits, shared by every worker (conversations.provider_limits, issue 15) -----------
# What the provider account allows, for the whole cluster: calls in flight, requests and tokens per
# minute. Empty = no limit. Set them a little under the account's figures.
LLM_MAX_CONCURRENT_CALLS = optional_limit("LLM_MAX_CONCURRENT_CALLS", maximum=100_000)
LLM_REQUESTS_PER_MINUTE = optional_limit("LLM_REQUESTS_PER_MINUTE", maximum=10_000_000)
LLM_TOKENS_PER_MINUTE = optional_limit("LLM_TOKENS_PER_MINUTE", maximum=10_000_000_000)
# The window the per-minute figures are counted over (seconds; 60 = per minute, as providers do).
LLM_RATE_WINDOW_SECONDS = number("LLM_RATE_WINDOW_SECONDS", default=60, minimum=1, maximum=3600)
# A call's hold on the capacity expires this long after its worker last renewed it (every third
# of it): a worker that dies gives its calls' capacity back within this time.
LLM_CAPACITY_LEASE_SECONDS = number("LLM_CAPACITY_LEASE_SECONDS", default=30, minimum=1, maximum=3600)
# Longest a task waits for capacity in its worker slot; past it the task is re-queued with a countdown.
LLM_CAPACITY_WAIT_SECONDS = number("LLM_CAPACITY_WAIT_SECONDS", default=5, minimum=0, maximum=300)
# The most completion tokens one reply may write when a budget applies (conversations.budgets):
# a reply reserves this much of what is left, so budgets are passed by at most one reply's cap.
AI_REPLY_MAX_TOKENS = optional_limit("AI_REPLY_MAX_TOKENS", maximum=1_000_000) or 4096
# Fairness between chat users (conversations.admission): at most this many of one chat user's AI
# replies are in the workers' hands at once; the rest wait in PostgreSQL for their turn. 0 = no limit.
_per_user = optional_limit("AI_MAX_CONCURRENT_PER_USER", minimum=0, maximum=10_000)
AI_MAX_CONCURRENT_PER_USER = 2 if _per_user is None else _per_user
# Estimated tokens of earlier messages sent with each prompt (the newest that fit).
LLM_HISTORY_TOKEN_BUDGET = env.int("LLM_HISTORY_TOKEN_BUDGET", default=3000)
# Knowledge base: characters per chunk, and how many of the best chunks go into a prompt.
KNOWLEDGE_CHUNK_SIZE = env.int("KNOWLEDGE_CHUNK_SIZE", default=1200)
KNOWLEDGE_CHUNKS_PER_PROMPT = env.int("KNOWLEDGE_CHUNKS_PER_PROMPT", default=3)
# PostgreSQL text search configuration of knowledge chunks ("simple" works for every language).
KNOWLEDGE_SEARCH_CONFIG = env("KNOWLEDGE_SEARCH_CONFIG", default="simple")
# What one tenant (API user) may keep in its knowledge base: documents, and their UTF-8 bytes.
KNOWLEDGE_MAX_DOCUMENTS_PER_TENANT = env.int("KNOWLEDGE_MAX_DOCUMENTS_PER_TENANT", default=1000)
KNOWLEDGE_MAX_BYTES_PER_TENANT = env.int("KNOWLEDGE_MAX_BYTES_PER_TENANT", default=100 * 1024 * 1024)
# Webhook callbacks are signed with HMAC-SHA256 of the body under this secret (X-Claw-Signature).
# Production has no default and refuses this one (claw_ai.settings.production).
DEVELOPMENT_WEBHOOK_SIGNING_SECRET = "development-only-webhook-secret"  # noqa: S105 (refused in production)
WEBHOOK_SIGNING_SECRET = secret("WEBHOOK_SIGNING_SECRET", default=DEVELOPMENT_WEBHOOK_SIGNING_SECRET)
# Callbacks go to public addresses only (a client must not make workers call internal services),
# and to these networks: comma-separated CIDRs, e.g. "10.20.0.0/16" for a receiver inside your
# own network (tasks_app.callback_addresses).
WEBHOOK_ALLOWED_NETWORKS = [
    ipaddress.ip_network(network.strip(), strict=False)
    for network in env.list("WEBHOOK_ALLOWED_NETWORKS", default=[])
    if network.strip()
]
# Seconds a callback receiver may take to answer before the delivery is retried.
WEBHOOK_TIMEOUT = env.float("WEBHOOK_TIMEOUT", default=10.0)
# Email notifications go through Django's email framework; the console backend prints them.
EMAIL_BACKEND = env("DJANGO_EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env("DJANGO_DEFAULT_FROM_EMAIL", default="CLAW.AI <noreply@localhost>")

# --- Housekeeping jobs (tasks_app.schedules, issue 5) -------------------------------------------
# Finished task records and their results are deleted after this many days.
TASK_CLEANUP_AFTER_DAYS = env.float("TASK_CLEANUP_AFTER_DAYS", default=30)
# Rows deleted per transaction, and seconds one cleanup run works before queueing itself again.
TASK_CLEANUP_BATCH_SIZE = env.int("TASK_CLEANUP_BATCH_SIZE", default=1000)
TASK_CLEANUP_TIME_BUDGET = env.float("TASK_CLEANUP_TIME_BUDGET", default=60)
# A task PENDING this long, held by no worker and absent from the broker, is re-sent (once per loss).
TASK_LOST_AFTER_SECONDS = env.float("TASK_LOST_AFTER_SECONDS", default=600)
# Unacknowledged messages older than this that no live worker claims go back to their queue.
TASK_RESCUE_GRACE_SECONDS = env.float("TASK_RESCUE_GRACE_SECONDS", default=300)
# Worker liveness (tasks_app.liveness): each worker writes a heartbeat to Redis every
# WORKER_HEARTBEAT_SECONDS that lives WORKER_HEARTBEAT_TTL_SECONDS; when one lapses, a live worker
# hands the dead one's unacknowledged messages back at once. The TTL is the longest a worker may
# stall (a paused process, a frozen VM) without its tasks being run elsewhere too.
WORKER_HEARTBEAT_SECONDS = env.float("WORKER_HEARTBEAT_SECONDS", default=2)
WORKER_HEARTBEAT_TTL_SECONDS = env.float("WORKER_HEARTBEAT_TTL_SECONDS", default=15)
# A worker with free slots that has not asked the broker for a message this long, while Redis
# answers, is stuck (Celery's consumer can stay idle after a reconnect): it exits, its supervisor
# (compose's restart policy, make run) starts it again.
WORKER_STUCK_AFTER_SECONDS = env.float("WORKER_STUCK_AFTER_SECONDS", default=60)
# A knowledge document still stale this long after its last change is queued for indexing again.
KNOWLEDGE_REINDEX_STALE_AFTER_SECONDS = env.float("KNOWLEDGE_REINDEX_STALE_AFTER_SECONDS", default=600)

# --- Monitoring (monitoring app, issue 17) -----------------------------------------------------
# Bearer token Prometheus sends to GET /metrics (Authorization: Bearer <token>); empty = only
# signed-in users with the monitoring.view_metrics permission may read it.
METRICS_TOKEN = secret("METRICS_TOKEN")
# How long the admin dashboard's rollup keeps its minute bins (its last-hour chart) and its hour bins
# (its day and week charts); older bins are pruned daily (monitoring.retention).
METRICS_ROLLUP_MINUTE_BINS_DAYS = number("METRICS_ROLLUP_MINUTE_BINS_DAYS", default=2, minimum=1, maximum=3650)
METRICS_ROLLUP_HOUR_BINS_DAYS = number("METRICS_ROLLUP_HOUR_BINS_DAYS", default=90, minimum=7, maximum=3650)
