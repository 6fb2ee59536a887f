"""The ASGI application the Procfile, the image and compose serve (gunicorn + uvicorn's worker class).

Two departures from `get_asgi_application()`, both for the cost of an ordinary (sync) request:

- The middleware runs as one synchronous chain, in the request's own thread, around Django's
  synchronous view path. Django's ASGI handler runs every middleware that *can* be async on the event
  loop, and Django's own (sessions, CSRF, auth, messages, ...) then hop to a thread and back for each
  process_request and process_response: a dozen thread switches for each API call, ~60% of a /status
  request's CPU in a profile. All this project's middleware is synchronous anyway; async views (the
  reply streams) still run on the event loop (Django's sync path hands them to it), and their
  responses stream from it.
- What every process's first requests would load while a client waits is loaded at start-up instead
  (warm_up): the URL patterns with every view and serializer they import, the admin's and the
  browsable API's templates, the task modules the admin's filter lists, a first pooled connection.
  The first /status of a fresh process took ~0.4-0.8 s and the first admin page ~0.7 s without it.
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
        self._middleware_chain = sync_to_async(self._middleware_chain, thread_sensitive=True)  # type: ignore[has-type]


def warm_up() -> None:
    from django.db import OperationalError, connection
    from django.template.loader import get_template
    from django.urls import get_resolver

    from tasks_app.admin_base import registered_task_names

    get_resolver().url_patterns  # noqa: B018 (imports every URL module, and the views and serializers they name)
    for name in ("admin/change_list.html", "admin/change_form.html", "admin/index.html", "rest_framework/api.html"):
        get_template(name)
    registered_task_names()
    try:
        connection.ensure_connection()  # opens the pool; the connection goes back to it at once
    except OperationalError:
        pass  # the database is not up yet: the first request will connect
    finally:
        connection.close()


def _application() -> ASGIHandler:
    import django

    django.setup(set_prefix=False)
    handler = SyncMiddlewareASGIHandler()
    warm_up()
    return handler


application = _application()
quiet_static_files()
