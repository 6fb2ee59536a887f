"""One-row INSERTs for the hottest writes, as SQL built once per model and reused.

The ORM compiles an INSERT (and get_or_create its SELECT and transaction) anew on every call. On
the submit path, where each request writes a task record and often a conversation, compiling
cost more CPU than PostgreSQL spends running the statements (bench/ANALYSIS.md, measurement 4).
The values are prepared as Model.save() prepares them: pre_save() fills auto_now fields and
get_db_prep_save() adapts JSON and dates.
"""

import functools
from typing import TypeVar

from django.db import connection
from django.db.models import Field, Model

M = TypeVar("M", bound=Model)


@functools.cache
def insert_fields(model: type[Model]) -> tuple[Field, ...]:
    """The fields an INSERT of `model` writes: every concrete field but a generated primary key."""
    # Field.db_returning (Django 4.2+) is missing from django-stubs 5.2.
    return tuple(
        field
        for field in model._meta.concrete_fields
        if not (field.primary_key and field.db_returning)  # type: ignore[attr-defined]
    )


def column_of(model: type[Model], name: str) -> str:
    """The database column of `model`'s field `name`, for hand-written SQL (a field with no column fails)."""
    field = model._meta.get_field(name)
    if not isinstance(field, Field) or field.column is None:
        raise TypeError(f"{model.__name__}.{name} has no database column")
    return field.column


def column_list(fields) -> str:
    return ", ".join(connection.ops.quote_name(field.column) for field in fields)


def placeholders(model: type[Model]) -> str:
    return ", ".join(["%s"] * len(insert_fields(model)))


def insert_values(instance: Model) -> list:
    """The values of `instance`'s INSERT, in insert_fields order."""
    return [
        field.get_db_prep_save(field.pre_save(instance, add=True), connection)
        for field in insert_fields(type(instance))
    ]


def loaded(model: type[M], fields, row) -> M:
    """An instance of `model` from the `fields` values of a row read from the database.

    Each value goes through its field's from_db_value, as the ORM's own reads do (a JSONField's
    text becomes its object).
    """
    values = [
        field.from_db_value(value, None, connection) if hasattr(field, "from_db_value") else value
        for field, value in zip(fields, row, strict=False)
    ]
    return model.from_db(connection.alias, [field.attname for field in fields], values)


@functools.cache
def _insert_sql(model: type[Model]) -> str:
    meta = model._meta
    assert meta.pk is not None
    return (
        f"INSERT INTO {connection.ops.quote_name(meta.db_table)} ({column_list(insert_fields(model))}) "
        f"VALUES ({placeholders(model)}) RETURNING {connection.ops.quote_name(meta.pk.column)}"
    )


def insert(instance: M) -> M:
    """INSERT `instance` in one prepared statement (no signals, no ORM compiling) and return it saved.

    For rows written on every submit or reply; an IntegrityError is raised as by save().
    """
    with connection.cursor() as cursor:
        cursor.execute(_insert_sql(type(instance)), insert_values(instance))
        instance.pk = cursor.fetchone()[0]
    instance._state.adding, instance._state.db = False, connection.alias
    return instance
