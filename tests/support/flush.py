"""A cheaper end for transactional tests (pytest-django's `django_db(transaction=True)`).

Django's TransactionTestCase empties the database after each such test: TRUNCATE of every table
(PostgreSQL makes new files for all 30-odd of them), then post_migrate, which re-creates the
content types, permissions and the system's periodic jobs. Measured here: 0.4 s a test on a quiet
machine, 1-3 s under load, for 400-odd tests. What it leaves is the state `migrate` left.

This leaves the same state for a few milliseconds: it empties only the tables the test wrote to
(DELETE; TRUNCATE for a table of more than BIG rows, so that the planner's statistics start over
as they did), and puts back the rows `migrate` created (read once, right after the test database
is made: tests/conftest.py's django_db_setup) only in the tables whose contents the test changed.
Anything it cannot do (an unexpected constraint, a table a test dropped) falls back to Django's
own flush.
"""

from __future__ import annotations

import logging

from django.core.management import call_command
from django.db import DatabaseError, connections, transaction
from django.test import TransactionTestCase

logger = logging.getLogger(__name__)

BIG = 1000
# Rounds of emptying: a trigger may write to a table already emptied (the task counters).
ROUNDS = 5

# database alias -> {table: (md5 of its rows, rows as text)} right after migrate
_baselines: dict[str, dict[str, tuple[str, list[str]]]] = {}
_django_fixture_teardown = TransactionTestCase._fixture_teardown


def install() -> None:
    TransactionTestCase._fixture_teardown = _fixture_teardown


def _tables(alias: str) -> list[str]:
    return sorted(connections[alias].introspection.django_table_names(only_existing=True, include_views=False))


def _digest(quoted_table: str) -> str:
    return f"(SELECT md5(string_agg(r::text, E'\\n' ORDER BY r::text)) FROM {quoted_table} r)"


def remember_baseline(alias: str = "default") -> None:
    """Read the rows migrate (and post_migrate) left, per table: call it right after the test database is made."""
    connection = connections[alias]
    quote = connection.ops.quote_name
    baseline = {}
    with connection.cursor() as cursor:
        for table in _tables(alias):
            cursor.execute(f"SELECT {_digest(quote(table))}, ARRAY(SELECT r::text FROM {quote(table)} r ORDER BY 1)")
            digest, rows = cursor.fetchone()
            if rows:
                baseline[table] = (digest, rows)
    _baselines[alias] = baseline


def _fixture_teardown(self: TransactionTestCase) -> None:
    if not _fast(self):
        _django_fixture_teardown(self)
        return
    for alias in self._databases_names(include_mirrors=False):
        try:
            _flush(alias)
        except DatabaseError:
            logger.warning("the fast flush failed; Django's own flush follows", exc_info=True)
            call_command("flush", verbosity=0, interactive=False, database=alias, reset_sequences=False)


def _fast(test: TransactionTestCase) -> bool:
    """Only the plain case (no available_apps, no serialized rollback), on PostgreSQL, with a baseline."""
    aliases = test._databases_names(include_mirrors=False)
    return (
        test.available_apps is None
        and not test.serialized_rollback
        and all(connections[alias].vendor == "postgresql" and alias in _baselines for alias in aliases)
    )


def _flush(alias: str) -> None:
    connection = connections[alias]
    quote = connection.ops.quote_name
    baseline = _baselines[alias]
    tables = _tables(alias)
    written = [table for table in tables if table not in baseline]
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        for _round in range(ROUNDS):
            if not written:
                break
            # One round trip: the row count (up to BIG + 1) of each table.
            sizes = ", ".join(f"(SELECT count(*) FROM (SELECT 1 FROM {quote(t)} LIMIT {BIG + 1}) s)" for t in written)
            cursor.execute(f"SELECT {sizes}")
            filled = {table: size for table, size in zip(written, cursor.fetchone(), strict=True) if size}
            if not filled:
                break
            big = [table for table, size in filled.items() if size > BIG]
            if big:
                cursor.execute(f"TRUNCATE {', '.join(map(quote, big))} CASCADE")
            for table in filled.keys() - set(big):
                cursor.execute(f"DELETE FROM {quote(table)}")
        else:
            raise DatabaseError(f"tables still not empty after {ROUNDS} rounds: {sorted(filled)}")

        kept = [table for table in baseline if table in tables]
        if not kept:
            return
        cursor.execute(f"SELECT {', '.join(_digest(quote(table)) for table in kept)}")
        for table, digest in zip(kept, cursor.fetchone(), strict=True):
            if digest != baseline[table][0]:
                cursor.execute(f"DELETE FROM {quote(table)}")
                cursor.execute(
                    f"INSERT INTO {quote(table)} SELECT (r::{quote(table)}).* FROM unnest(%s::text[]) r",
                    [baseline[table][1]],
                )
