"""Production's bar for secrets: a weak one stops the process at startup, saying how to make a real one.

Django's `check --deploy` only warns about a weak SECRET_KEY (security.W009), nothing looks at
the webhook secret or Flower's password at all, and a warning scrolls past where a refusal cannot.
Every secret meets Django's W009 rules (no `django-insecure-` key, 5+ distinct characters) and a
length of its own.
"""

from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)
from django.core.exceptions import ImproperlyConfigured

_TOKEN = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"  # noqa: S105 (a command, not a secret)
# Shortest accepted value of each secret, and a command that prints a good one.
POLICIES = {
    "DJANGO_SECRET_KEY": (
        SECRET_KEY_MIN_LENGTH,
        "python -c 'from django.core.management.utils import get_random_secret_key as k; print(k())'",
    ),
    # An HMAC-SHA256 key: 32 characters is the least that is not weaker than the hash.
    "WEBHOOK_SIGNING_SECRET": (32, _TOKEN),
    # Typed by people into a browser prompt, so shorter; Flower has no lockout, so not short.
    "FLOWER_PASSWORD": (12, _TOKEN),
}

# Values published as placeholders (.env.example says change-me) or shipped as defaults by
# Flower's docs and tutorials, compared case-insensitively.
KNOWN_DEFAULTS = frozenset(
    {"change-me", "changeme", "change_me", "admin", "password", "secret", "flower", "123456", "12345678"}
)


def weakness(value: str, *, min_length: int, refused: frozenset[str] = frozenset()) -> str | None:
    """What is wrong with `value` as a production secret, or None if nothing is."""
    if not value:
        return "is not set"
    if value.lower() in KNOWN_DEFAULTS | refused:
        return "is a published default or placeholder"
    if value.startswith(SECRET_KEY_INSECURE_PREFIX):
        return f"is a development key (it starts with '{SECRET_KEY_INSECURE_PREFIX}')"
    if len(value) < min_length:
        return f"is too short ({len(value)} characters)"
    if len(set(value)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS:
        return f"has too little variety ({len(set(value))} distinct characters)"
    return None


def require_strong_secret(name: str, value: str, *, refused: frozenset[str] = frozenset()) -> None:
    """Raise ImproperlyConfigured naming the secret, what is wrong with it and how to generate one.

    `refused` adds values known only to the caller (e.g. a development default).
    """
    min_length, generate = POLICIES[name]
    problem = weakness(value, min_length=min_length, refused=refused)
    if problem:
        raise ImproperlyConfigured(
            f"{name} {problem}: production needs a random value of at least {min_length} characters. "
            f"Generate one with: {generate}"
        )
