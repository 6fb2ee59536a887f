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

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = "claw_ai.settings.production"
# Nothing connects while settings load, so these servers need not exist.
SERVERS = {
    "DATABASE_URL": "postgres://claw:pw@db.internal:6543/claw_prod",
    "REDIS_URL": "redis://cache.internal:6390/3",
}
REAL = {"DJANGO_SECRET_KEY": get_random_secret_key(), "FLOWER_PASSWORD": "a-real-flower-password"}
UNSET = None


def run_python(code: str, **environment: str | None) -> subprocess.CompletedProcess:
    """Run `code` with the environment given; a None value removes that variable."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name, value in environment.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def setup_production(**environment: str | None) -> subprocess.CompletedProcess:
    return run_python(
        "import django; django.setup()", DJANGO_SETTINGS_MODULE=PRODUCTION, **{**SERVERS, **REAL, **environment}
    )


def test_production_starts_with_a_real_secret_key_and_flower_password():
    # when
    result = setup_production()

    # then
    assert result.returncode == 0, result.stderr


def test_secrets_are_read_verbatim_even_when_they_start_with_a_dollar():
    # given secrets as generators make them, starting with "$" (django-environ would expand that)
    key, password = "$" + get_random_secret_key()[1:], "$flower-password"
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
        WEBHOOK_SIGNING_SECRET="$hook",
    )

    # then it starts, with each secret exactly as given
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [key, password, "$sk-1", "$hook"]


@pytest.mark.parametrize(
    "secret_key",
    [
        UNSET,
        "",
        "change-me",  # the value of .env.example
        "django-insecure-" + "x" * 60,  # Django's generated development keys
        "x" * 49,
    ],
    ids=["unset", "empty", "env-example", "django-insecure", "short"],
)
def test_production_refuses_a_default_or_missing_secret_key(secret_key):
    # when
    result = setup_production(DJANGO_SECRET_KEY=secret_key)

    # then
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


@pytest.mark.parametrize("password", [UNSET, "", "admin"], ids=["unset", "empty", "seed-default"])
def test_production_refuses_flower_without_a_real_password(password):
    # when
    result = setup_production(FLOWER_PASSWORD=password)

    # then
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "FLOWER_PASSWORD must be set" in result.stderr


def test_production_passes_django_deploy_checks():
    # when
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": PRODUCTION, **SERVERS, **REAL},
        capture_output=True,
        text=True,
        timeout=120,
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
    assert wrong.returncode != 0 and "'not-a-network' does not appear to be an IPv4 or IPv6 network" in wrong.stderr
