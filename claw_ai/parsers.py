"""The API's JSON parser: DRF's, refusing bodies nested deeper than API_MAX_JSON_DEPTH.

Python's json decoder recurses once per nested array or object, so a body like `[[[[...]]]]`
a thousand deep raises RecursionError, which DRF does not catch: a 500 for a 4 KB request. Even
below that, every later step that walks the data (validation, copies, rendering) recurses too.

The depth is measured on the text before it is decoded, without recursion: strings are blanked
first (a bracket inside a string is text, not nesting), then the remaining brackets are counted.
A decoder of our own that never recurses would also do, but it would be slower than the C one in
pure Python, and the C one would still be what parses the bodies that pass. Both steps are linear:
the string pattern cannot backtrack (its closing quote is optional, so it never fails), and the
count stops at the first bracket past the limit.
"""

import re

from django.conf import settings
from django.utils.translation import gettext as _
from rest_framework.exceptions import ParseError

# get_encoding is DRF 3.17+; djangorestframework-stubs 3.16 (the last for django-stubs 5.2) lacks it.
from rest_framework.parsers import JSONParser, get_encoding  # type: ignore[attr-defined]
from rest_framework.utils import json

# A JSON string (escapes included), or the rest of the text after an unterminated one.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")


def nesting_exceeds(text: str, limit: int) -> bool:
    """Whether arrays and objects in this JSON text nest deeper than `limit`."""
    depth = 0
    for bracket in _NOT_A_BRACKET.sub("", _STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


class DepthLimitedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = get_encoding(parser_context or {})
        limit = settings.API_MAX_JSON_DEPTH
        try:
            text = stream.read().decode(encoding)
        except ValueError as exc:  # as DRF answers an undecodable body
            raise ParseError(f"JSON parse error - {exc}") from exc
        if nesting_exceeds(text, limit):
            raise ParseError(
                _("JSON nested too deeply: arrays and objects may nest at most %(limit)d levels.") % {"limit": limit},
                code="json_too_deep",
            )
        try:
            return json.loads(text, parse_constant=json.strict_constant if self.strict else None)
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
