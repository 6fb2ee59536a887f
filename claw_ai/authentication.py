"""DRF's token authentication, with the token's user read by one plain SQL query.

DRF looks a token up with `Token.objects.select_related("user").get(key=...)` on every API
request, and building that query costs more CPU than PostgreSQL spends running it (bench/ANALYSIS.md,
measurement 4). The same join written once as SQL reads the user without the ORM's query
compilation; the answers (401 for an unknown token or an inactive user) are DRF's own.
"""

from functools import cache

from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token


@cache
def _user_by_token_sql() -> str:
    users, tokens = get_user_model()._meta, Token._meta
    return (
        f"SELECT u.*, t.created AS token_created FROM {users.db_table} u "
        f"JOIN {tokens.db_table} t ON t.{tokens.get_field('user').column} = u.{users.pk.column} "
        f"WHERE t.{tokens.pk.column} = %s"
    )


class TokenAuthentication(authentication.TokenAuthentication):
    def authenticate_credentials(self, key):
        user = next(iter(get_user_model().objects.raw(_user_by_token_sql(), [key])), None)
        if user is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        token = Token(key=key, user=user, created=user.token_created)  # type: ignore[attr-defined]  # the raw query's column
        token._state.adding, token._state.db = False, user._state.db
        return user, token
