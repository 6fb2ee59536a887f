"""The ASGI application the Procfile, the image and compose serve (gunicorn + uvicorn's worker class).

Two departures from `get_asgi_application()`, both for the cost of an ordinary (sync) request:

- The middleware runs as one synchronous chain, in the request's own thread, around Django's
  synchronous view path. Django's ASGI handler runs every middleware that *can* be async on the event
  loop, and Django's own (sessions, CSRF, auth, messages, ...) then hop to a thread and back for each
  process_request and process_response: a dozen thread switches for each API call, ~60% of a /status
  request's CPU in a profile. All this project's middleware is synchronous anyway; async views (the
  reply streams) still run on the event loop (Django's sync path hands them to it), and their
  responses stream from it.
- Database connections come from psycopg's pool (DJANGO_DB_POOL_MAX_SIZE, 8 per process unless set).
  Under ASGI each request runs in a thread of its own, so a persistent connection (CONN_MAX_AGE) was
  opened by every request and left behind when its thread ended: a new PostgreSQL backend per request.
"""

import os

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler

from claw_ai.access_log import quiet_static_files

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "claw_ai.settings.development")
os.environ.setdefault("DJANGO_DB_POOL_MAX_SIZE", "8")


class SyncMiddlewareASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        BaseHandler.__init__(self)
        self.load_middleware(is_async=False)
        # One thread switch per request: into the request's thread for the whole chain and view.
        self._middleware_chain = sync_to_async(self._middleware_chain, thread_sensitive=True)


def _application() -> ASGIHandler:
    import django

    django.setup(set_prefix=False)
    return SyncMiddlewareASGIHandler()


application = _application()
quiet_static_files()
