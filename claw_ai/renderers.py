"""The browsable API's page, made to submit one request after another.

After a POST, DRF fills the form under the answer from the answer's own serializer when it has one,
and from nothing when it has none: after `/tasks/ai/generate` answered 202 the form showed task_id,
status and message instead of the question's fields, and after a 400 it came back empty, with no
error beside any field. Here the form after a POST is always the view's input serializer, filled
with what was sent and validated (so each field error stands beside its field); the answer stays
above it.
"""

from rest_framework import renderers
from rest_framework.exceptions import ParseError
from rest_framework.utils.serializer_helpers import ReturnDict


class BrowsableAPIRenderer(renderers.BrowsableAPIRenderer):
    def get_rendered_html_form(self, data, view, method, request):
        if method == "POST" and request.method == "POST" and hasattr(view, "get_serializer"):
            try:
                sent = view.get_serializer(data=request.data)
            except (ParseError, TypeError):  # unreadable body, or a serializer that takes no data
                sent = None
            if sent is not None:
                # DRF renders the form of the serializer the data carries, refilled with request.data.
                data = ReturnDict(data if isinstance(data, dict) else {}, serializer=sent)
        return super().get_rendered_html_form(data, view, method, request)
