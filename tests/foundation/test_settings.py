"""Settings come from the environment, and production refuses to start on defaults.

Each case loads the settings in a fresh interpreter, as a server process would.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management.utils import get_random_secret_key

# Starts Python processes that load the settings: left out of make test-fast.
pytestmark = pytest.mark.worker

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = "claw_ai.settings.production"
# Nothing connects while settings load, so these servers need not exist.
SERVERS = {
    "DATABASE_URL": "postgres://claw:pw@db.internal:6543/claw_prod",
    "REDIS_URL": "redis://cache.internal:6390/3",
}
REAL = {
    "DJANGO_SECRET_KEY": get_random_secret_key(),
    "WEBHOOK_SIGNING_SECRET": get_random_secret_key()[:40],
    "FLOWER_PASSWORD": "a-real-flower-password",
}
UNSET = None


def run_python(code: str, **environment: str | None) -> subprocess.CompletedProcess:
    """Run `code` with the environment given; a None value removes that variable."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name, value in environment.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def setup_production(**environment: str | None) -> subprocess.CompletedProcess:
    return run_python(
        "import django; django.setup()", DJANGO_SETTINGS_MODULE=PRODUCTION, **{**SERVERS, **REAL, **environment}
    )


def test_production_starts_with_strong_secrets():
    # when
    result = setup_production()

    # then
    assert result.returncode == 0, result.stderr


def test_secrets_are_read_verbatim_even_when_they_start_with_a_dollar():
    # given secrets as generators make them, starting with "$" (django-environ would expand that)
    key, password, hook = "$" + get_random_secret_key()[1:], "$flower-password", "$" + get_random_secret_key()[:39]
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps([s.SECRET_KEY, s.FLOWER_PASSWORD, s.LLM_API_KEY, s.WEBHOOK_SIGNING_SECRET]))"
    )

    # when production loads them
    result = run_python(
        code,
        DJANGO_SETTINGS_MODULE=PRODUCTION,
        **SERVERS,
        DJANGO_SECRET_KEY=key,
        FLOWER_PASSWORD=password,
        LLM_API_KEY="$sk-1",
        WEBHOOK_SIGNING_SECRET=hook,
    )

    # then it starts, with each secret exactly as given
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [key, password, "$sk-1", hook]


# (variable, weak value, the reason production gives). Each secret is refused as Django's
# `check --deploy` W009 would warn about a SECRET_KEY, and below its own length.
WEAK_SECRETS = [
    ("DJANGO_SECRET_KEY", UNSET, "is not set"),
    ("DJANGO_SECRET_KEY", "", "is not set"),
    ("DJANGO_SECRET_KEY", "Change-Me", "is a published default or placeholder"),
    ("DJANGO_SECRET_KEY", "django-insecure-" + get_random_secret_key(), "is a development key"),
    ("DJANGO_SECRET_KEY", get_random_secret_key()[:49], "is too short (49 characters)"),
    ("DJANGO_SECRET_KEY", "abcd" * 20, "has too little variety (4 distinct characters)"),
    ("WEBHOOK_SIGNING_SECRET", UNSET, "is not set"),
    ("WEBHOOK_SIGNING_SECRET", "development-only-webhook-secret", "is a published default or placeholder"),
    ("WEBHOOK_SIGNING_SECRET", "secret", "is a published default or placeholder"),
    ("WEBHOOK_SIGNING_SECRET", get_random_secret_key()[:31], "is too short (31 characters)"),
    ("WEBHOOK_SIGNING_SECRET", "ab" * 20, "has too little variety (2 distinct characters)"),
    ("FLOWER_PASSWORD", UNSET, "is not set"),
    ("FLOWER_PASSWORD", "", "is not set"),
    ("FLOWER_PASSWORD", "admin", "is a published default or placeholder"),
    ("FLOWER_PASSWORD", "flower", "is a published default or placeholder"),
    ("FLOWER_PASSWORD", "123456", "is a published default or placeholder"),
    ("FLOWER_PASSWORD", "Correct-hor", "is too short (11 characters)"),
    ("FLOWER_PASSWORD", "aaaa" * 4, "has too little variety (1 distinct characters)"),
]


@pytest.mark.parametrize(
    ("name", "value", "reason"), WEAK_SECRETS, ids=[f"{name}-{reason.split()[-1]}" for name, _, reason in WEAK_SECRETS]
)
def test_production_refuses_a_weak_secret_and_says_how_to_make_one(name, value, reason):
    # when
    result = setup_production(**{name: value})

    # then the process stops, naming the secret, what is wrong and a command that prints a good one
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(f"django.core.exceptions.ImproperlyConfigured: {name} {reason}"), message
    assert "Generate one with: python -c" in message


def env_example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


@pytest.mark.parametrize("name", ["DJANGO_SECRET_KEY", "WEBHOOK_SIGNING_SECRET", "FLOWER_PASSWORD"])
def test_production_refuses_each_secret_as_env_example_leaves_it(name):
    # given .env.example copied to .env without editing this secret
    placeholder = env_example()[name]

    # when
    result = setup_production(**{name: placeholder})

    # then
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {name} " in result.stderr


def test_production_passes_django_deploy_checks():
    # when
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": PRODUCTION, **SERVERS, **REAL},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # then
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


PRINT_RESOLVED = """
import json
import django
django.setup()
from django.conf import settings
from claw_ai.celery import celery_app
db = settings.DATABASES["default"]
print(json.dumps({
    "database": [db["ENGINE"], db["HOST"], db["PORT"], db["NAME"], db["USER"], db["PASSWORD"]],
    "cache": settings.CACHES["default"]["LOCATION"],
    "broker": celery_app.conf.broker_url,
    "transport": getattr(settings, "CELERY_BROKER_TRANSPORT", None),
}))
"""


def resolved_settings(**environment: str | None) -> dict:
    result = run_python(PRINT_RESOLVED, DJANGO_SETTINGS_MODULE="claw_ai.settings.development", **environment)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_settings_read_the_servers_from_the_environment():
    # when
    resolved = resolved_settings(**SERVERS, CELERY_BROKER_URL=UNSET)

    # then: the database from DATABASE_URL; cache and broker from REDIS_URL
    assert resolved["database"] == [
        "django.db.backends.postgresql",
        "db.internal",
        6543,
        "claw_prod",
        "claw",
        "pw",
    ]
    assert resolved["cache"] == "redis://cache.internal:6390/3"
    assert resolved["broker"] == "redis://cache.internal:6390/3"
    # the 9-is-highest priority transport serves a Redis broker
    assert resolved["transport"] == "claw_ai.broker:PriorityRedisTransport"


def test_celery_broker_url_overrides_the_broker_only():
    # when
    resolved = resolved_settings(**SERVERS, CELERY_BROKER_URL="amqp://guest:guest@mq.internal:5672//")

    # then: RabbitMQ carries the tasks; Redis stays the cache
    assert resolved["broker"] == "amqp://guest:guest@mq.internal:5672//"
    assert resolved["cache"] == "redis://cache.internal:6390/3"
    assert resolved["transport"] is None


def test_webhook_allowed_networks_default_to_none_and_read_a_cidr_list():
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print([str(network) for network in s.WEBHOOK_ALLOWED_NETWORKS])"
    )
    development = {"DJANGO_SETTINGS_MODULE": "claw_ai.settings.development", **SERVERS}

    empty = run_python(code, **development, WEBHOOK_ALLOWED_NETWORKS="")
    listed = run_python(code, **development, WEBHOOK_ALLOWED_NETWORKS=" 10.20.0.0/16, 192.168.1.7 ,fd00::/8")
    wrong = run_python(code, **development, WEBHOOK_ALLOWED_NETWORKS="10.20.0.0/16,not-a-network")

    assert empty.stdout.strip() == "[]", empty.stderr
    assert listed.stdout.strip() == "['10.20.0.0/16', '192.168.1.7/32', 'fd00::/8']", listed.stderr
    # a mistyped network stops the process with the value named, instead of being ignored
    assert wrong.returncode != 0
    assert "'not-a-network' does not appear to be an IPv4 or IPv6 network" in wrong.stderr


def test_an_empty_secret_counts_as_unset():
    # given .env.example's `WEBHOOK_SIGNING_SECRET=` (empty, so production compose refuses it)
    code = "import django; django.setup(); from django.conf import settings as s; print(s.WEBHOOK_SIGNING_SECRET)"

    # when development loads it
    development = {"DJANGO_SETTINGS_MODULE": "claw_ai.settings.development", **SERVERS}
    result = run_python(code, **development, WEBHOOK_SIGNING_SECRET="")

    # then it signs with its development default, never with an empty key
    assert result.stdout.strip() == "development-only-webhook-secret", result.stderr
