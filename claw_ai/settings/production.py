"""Production: refuses to start with a default secret, and turns on Django's deploy checks."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import FLOWER_PASSWORD, SECRET_KEY, env

DEBUG = False

if not SECRET_KEY or SECRET_KEY.startswith("django-insecure") or len(SECRET_KEY) < 50:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY must be set to a random value of at least 50 characters in production "
        "(python -c 'from django.core.management.utils import get_random_secret_key as k; print(k())')."
    )
if FLOWER_PASSWORD in ("", "admin"):
    raise ImproperlyConfigured("FLOWER_PASSWORD must be set to a real password in production (not 'admin').")

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
