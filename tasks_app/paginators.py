"""Admin lists that cost the same at any depth of a table of millions of rows.

Django's admin pages with OFFSET (`?p=10000` reads and throws away 500,000 rows: 30 s on a cold
cache) and counts every row for its page links. Here:
- `EstimatedCountPaginator` says how many rows there are without COUNT(*) over the table:
  unfiltered, PostgreSQL's planner estimate (pg_class.reltuples, kept fresh by ANALYZE), exact only
  when the table is small; filtered, a count of at most CAP + 1 rows (an index scan bounded by LIMIT),
  so the admin says "more than CAP".
- `KeysetChangeList` reads each page from where the last one ended (keyset pagination): `?cursor=`
  holds the sort key of the row next to the page, the page is one index range scan of
  list_per_page + 1 rows, and the links go to the first, previous, next and last pages (the last is the
  same scan backwards). Filters, search and sorting by the indexed columns still apply; a page
  number (`?p=`) is not offered, and an old link with one shows the first page.
The pagination template (admin/tasks_app/taskrecord/pagination.html) draws the links and says which
kind of number the count is.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, cast

from django.contrib import messages
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import PAGE_VAR, ChangeList
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.core.paginator import Paginator
from django.db.models import F, Model, OrderBy, Q
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.translation import gettext as _

from tasks_app import records

if TYPE_CHECKING:
    from django.db.models import Field, QuerySet

# Below this many rows an exact count is cheap.
EXACT_COUNT_BELOW = 10_000
# A filtered count stops here.
FILTERED_COUNT_CAP = 10_000
# The query parameter of a page's position: "n" (the rows after a key) or "p" (the rows before it).
CURSOR_VAR = "cursor"
AFTER, BEFORE = "n", "p"
PK_PLACEHOLDER = "__pk__"


class EstimatedCountPaginator(Paginator):
    count_is_estimate = False
    count_is_capped = False
    cap = FILTERED_COUNT_CAP

    @cached_property
    def count(self) -> int:
        queryset = cast("QuerySet", self.object_list)  # the admin hands it a queryset, never a list
        if not queryset.query.where:
            estimate = records.estimated_rows(queryset.model, using=queryset.db)
            if estimate >= EXACT_COUNT_BELOW:
                self.count_is_estimate = True
                return estimate
            return queryset.count()
        count = queryset[: self.cap + 1].count()
        self.count_is_capped = count > self.cap
        return count


class InvalidCursor(ValueError):
    pass


def encode_cursor(direction: str, key: list | None) -> str:
    return base64.urlsafe_b64encode(json.dumps([direction, key], default=str).encode()).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[str, list | None]:
    try:
        direction, key = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
        raise InvalidCursor(text) from None
    if direction not in (AFTER, BEFORE) or not (key is None or isinstance(key, list)):
        raise InvalidCursor(text)
    return direction, key


def beyond(ordering: list[tuple[str, bool]], key: list) -> Q:
    """The rows after `key` in `ordering` ((field, descending) pairs): (a, b) > (x, y) spelt so that
    PostgreSQL scans the index range of the first column (a >= x AND (a > x OR (a = x AND b > y)))."""
    first, first_descending = ordering[0]
    alternatives = Q()
    for position, (field, descending) in enumerate(ordering):
        equal = {name: value for (name, _), value in zip(ordering[:position], key, strict=False)}
        alternatives |= Q(**equal, **{f"{field}__{'lt' if descending else 'gt'}": key[position]})
    return Q(**{f"{first}__{'lte' if first_descending else 'gte'}": key[0]}) & alternatives


class KeysetChangeList(ChangeList):
    """The admin's change list, paged by keyset (see the module's docstring)."""

    def __init__(self, request, *args, **kwargs) -> None:
        self.cursor_text = request.GET.get(CURSOR_VAR, "")
        super().__init__(request, *args, **kwargs)

    def get_filters_params(self, params=None):
        # The cursor is the page's position, not a filter on a column.
        lookup_params = super().get_filters_params(params)
        lookup_params.pop(CURSOR_VAR, None)
        return lookup_params

    @cached_property
    def keyset_ordering(self) -> list[tuple[str, bool]]:
        """The list's ordering as (column, descending) pairs, up to its first unique column.

        Every column must be a non-null concrete field (the admins' sortable_by keep it so), so that a
        row's key is always a full tuple of values; any other ordering falls back to the model's own.
        """
        ordering = self._as_keyset(self.queryset.query.order_by)
        return ordering if ordering is not None else self._as_keyset(self.lookup_opts.ordering) or []

    def _as_keyset(self, parts) -> list[tuple[str, bool]] | None:
        opts, ordering = self.lookup_opts, cast("list[tuple[str, bool]]", [])
        for part in parts:
            if isinstance(part, str):
                name, descending = part.lstrip("-"), part.startswith("-")
            elif isinstance(part, OrderBy) and isinstance(part.expression, F):
                name, descending = part.expression.name, part.descending
            else:
                return None
            try:
                # A concrete field here, or a relation or generic key refused just below.
                field = cast("Field", opts.pk if name == "pk" else opts.get_field(name))
            except FieldDoesNotExist:
                return None
            if field.null or not field.concrete or field.is_relation:
                return None
            if field.attname not in (column for column, _ in ordering):
                ordering.append((field.attname, descending))
            if field.primary_key or field.unique:
                return ordering
        return [*ordering, (opts.pk.attname, True)]  # the tie-breaker Django's admin adds too

    def get_results(self, request) -> None:
        # Filter, search and sort links lead to the first page of what they choose.
        self.params.pop(CURSOR_VAR, None)
        self.filter_params.pop(CURSOR_VAR, None)
        if self.page_num != 1:
            messages.info(
                request,
                _("Pages are not numbered in this list: use its Next and Previous links, or a filter."),
                fail_silently=True,
            )
            self.page_num = 1
        self.paginator = self.model_admin.get_paginator(request, self.queryset, self.list_per_page)
        self.result_count = self.paginator.count
        self.full_result_count = None
        self.show_full_result_count = False
        self.show_admin_actions = True
        self.can_show_all = self.result_count <= self.list_max_show_all
        if self.show_all and self.can_show_all:
            self.result_list, self.has_previous, self.has_next = list(self.queryset), False, False
        else:
            try:
                direction, key = decode_cursor(self.cursor_text) if self.cursor_text else (AFTER, None)
                self.result_list, self.has_previous, self.has_next = self._page(direction, key)
            except (InvalidCursor, ValidationError, TypeError, ValueError):
                messages.error(request, _("That page link is not valid: showing the first page."), fail_silently=True)
                self.result_list, self.has_previous, self.has_next = self._page(AFTER, None)
        self.multi_page = self.has_previous or self.has_next

    def _page(self, direction: str, key: list | None) -> tuple[list[Model], bool, bool]:
        """The page's rows, and whether rows come before it and after it."""
        ordering, size = self.keyset_ordering, self.list_per_page
        if direction == BEFORE:  # the same scan backwards
            ordering = [(column, not descending) for column, descending in ordering]
        queryset = self.queryset.order_by(*(f"-{c}" if descending else c for c, descending in ordering))
        if key is not None:
            queryset = queryset.filter(beyond(ordering, self._key_values(key)))
        rows = list(queryset[: size + 1])
        more = len(rows) > size
        if direction == AFTER:
            return rows[:size], key is not None, more
        if key is not None and not more:
            # Back at the start: the first page, full, as its own link shows it.
            return self._page(AFTER, None)
        return rows[:size][::-1], more, key is not None

    def _key_values(self, key: list) -> list:
        if len(key) != len(self.keyset_ordering):
            raise InvalidCursor(key)
        return [
            cast("Field", self.lookup_opts.get_field(column)).to_python(value)
            for (column, _), value in zip(self.keyset_ordering, key, strict=True)
        ]

    def _key_of(self, row: Model) -> list:
        return [getattr(row, column) for column, _ in self.keyset_ordering]

    @cached_property
    def _change_url_pattern(self) -> str:
        opts = self.opts
        return reverse(
            f"admin:{opts.app_label}_{opts.model_name}_change",
            args=(PK_PLACEHOLDER,),
            current_app=self.model_admin.admin_site.name,
        )

    def url_for_result(self, result) -> str:
        # One reverse() per page instead of one per row.
        return self._change_url_pattern.replace(PK_PLACEHOLDER, str(quote(getattr(result, self.pk_attname))), 1)

    # --- links for the pagination template ----------------------------------------------------------
    def _link(self, cursor: str | None) -> str:
        return self.get_query_string({CURSOR_VAR: cursor} if cursor else {}, [CURSOR_VAR, PAGE_VAR])

    def first_url(self) -> str:
        return self._link(None)

    def previous_url(self) -> str:
        return self._link(encode_cursor(BEFORE, self._key_of(self.result_list[0])))

    def next_url(self) -> str:
        return self._link(encode_cursor(AFTER, self._key_of(self.result_list[-1])))

    def last_url(self) -> str:
        return self._link(encode_cursor(BEFORE, None))


class KeysetPaginationMixin:
    """For a ModelAdmin: its change list paged by keyset, counted without COUNT(*) over the table."""

    paginator: type[Paginator] = EstimatedCountPaginator
    show_full_result_count = False

    def get_changelist(self, request, **kwargs):
        return KeysetChangeList
