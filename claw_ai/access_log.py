"""Access logs without the static files: one line per page view, not one per stylesheet and icon.

The web server (gunicorn, or uvicorn under ASGI) logs every request it serves; whitenoise serves the
admin's and the browsable API's files from the same process, a dozen lines for each page a
developer opens in `make run`. The filter sits on the servers' own access loggers (named by them),
added when the application loads in each server process.
"""

import logging

from django.conf import settings

ACCESS_LOGGERS = ("gunicorn.access", "uvicorn.access")


class WithoutStaticFiles(logging.Filter):
    def __init__(self, static_url: str) -> None:
        super().__init__()
        # The request line reads `GET /static/admin/css/base.css HTTP/1.1` in both servers' formats.
        self.marker = " /" + static_url.lstrip("/")

    def filter(self, record: logging.LogRecord) -> bool:
        return self.marker not in record.getMessage()


def quiet_static_files() -> None:
    quiet = WithoutStaticFiles(settings.STATIC_URL)
    for name in ACCESS_LOGGERS:
        logging.getLogger(name).addFilter(quiet)
