"""`make run` on a developer's machine: debug on, everything else as in base."""

from claw_ai.settings import run_servers

# Before base reads DATABASE_URL / REDIS_URL: a running `make run`'s private servers, for
# manage.py and celery in another terminal (claw_ai.settings.run_servers).
run_servers.read_into_environ()

from .base import *  # noqa: E402, F403
from .base import env  # noqa: E402

DEBUG = env.bool("DJANGO_DEBUG", default=True)
