"""Refuse request bodies over the configured size before anything reads them.

Django enforces DATA_UPLOAD_MAX_MEMORY_SIZE only when `request.body` or form
data is read; DRF's parsers read the stream directly, so without this a client
could make a worker process hold any amount of JSON.
"""

from django.conf import settings
from django.http import JsonResponse
from django.utils.translation import gettext as _


class RequestBodyLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.MAX_REQUEST_BODY_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse({"detail": _("Invalid Content-Length header.")}, status=400)
        if length > limit:
            return JsonResponse(
                {"detail": _("Request body too large: %(size)d bytes, the limit is %(limit)d bytes.")
                 % {"size": length, "limit": limit}},
                status=413,
            )
        return self.get_response(request)
