"""The project package's one hand-written statement: an API token's user.

DRF looks a token up with `Token.objects.select_related("user").get(key=...)` on every API
request, and building that query costs more CPU than PostgreSQL spends running it (bench/ANALYSIS.md,
measurement 4). The same join written once as SQL, column names from the models, reads the user
without the ORM's query compilation.
"""

from functools import cache

from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token


@cache
def _user_by_token_sql() -> str:
    users, tokens = get_user_model()._meta, Token._meta
    return (
        f"SELECT u.*, t.{tokens.get_field('created').column} AS token_created FROM {users.db_table} u "
        f"JOIN {tokens.db_table} t ON t.{tokens.get_field('user').column} = u.{users.pk.column} "
        f"WHERE t.{tokens.pk.column} = %s"
    )


def user_by_token(key: str):
    """The user whose API token is `key` (with the token's creation time as `token_created`), or None."""
    return next(iter(get_user_model().objects.raw(_user_by_token_sql(), [key])), None)
