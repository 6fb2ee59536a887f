"""Refuse request bodies over the configured size before anything reads them.

Django enforces DATA_UPLOAD_MAX_MEMORY_SIZE only when `request.body` or form
data is read; DRF's parsers read the stream directly, so without this a client
could make a worker process hold any amount of JSON.
"""

from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext as _

from claw_ai.errors import error_response


class RequestBodyLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.MAX_REQUEST_BODY_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = None
        if length is not None and length <= limit:
            return self.get_response(request)
        # This runs before LocaleMiddleware: answer in the caller's language all the same.
        with translation.override(translation.get_language_from_request(request)):
            if length is None:
                return error_response(_("Invalid Content-Length header."), code="invalid_content_length", status=400)
            message = _("Request body too large: %(size)d bytes, the limit is %(limit)d bytes.") % {
                "size": length,
                "limit": limit,
            }
            return error_response(message, code="request_too_large", status=413)
