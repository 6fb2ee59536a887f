"""Cursor pagination for the API's lists: stable pages however many rows, and no COUNT(*)."""

from django.utils.translation import gettext as _
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination


class NewestFirstPagination(CursorPagination):
    """Newest first by id (immutable and unique, so a page never repeats or skips a row).

    `?limit=` sets the page size (default 50, at most 200); a cursor the server did not make is
    a 400 naming the `cursor` parameter, not DRF's 404.
    """

    ordering = "-id"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200

    def paginate_queryset(self, queryset, request, view=None):
        try:
            return super().paginate_queryset(queryset, request, view)
        except NotFound:
            raise ValidationError({"cursor": [_("Invalid cursor.")]}) from None
