"""Production: refuses to start with a weak or default secret, and turns on Django's deploy checks."""

from .base import *  # noqa: F403
from .base import DEVELOPMENT_WEBHOOK_SIGNING_SECRET, FLOWER_PASSWORD, env, secret
from .secrets_policy import require_strong_secret

DEBUG = False

# Read again without base's development defaults, so an unset secret is refused as unset.
SECRET_KEY = secret("DJANGO_SECRET_KEY")
WEBHOOK_SIGNING_SECRET = secret("WEBHOOK_SIGNING_SECRET")

require_strong_secret("DJANGO_SECRET_KEY", SECRET_KEY)
require_strong_secret(
    "WEBHOOK_SIGNING_SECRET", WEBHOOK_SIGNING_SECRET, refused=frozenset({DEVELOPMENT_WEBHOOK_SIGNING_SECRET})
)
require_strong_secret("FLOWER_PASSWORD", FLOWER_PASSWORD)

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
