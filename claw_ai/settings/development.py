"""`make run` on a developer's machine: debug on, everything else as in base."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
