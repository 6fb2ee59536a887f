"""DRF's token authentication, with the token's user read by one plain SQL query (claw_ai.queries).

The answers (401 for an unknown token or an inactive user) are DRF's own.
"""

from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token

from claw_ai.queries import user_by_token


class TokenAuthentication(authentication.TokenAuthentication):
    def authenticate_credentials(self, key):
        user = user_by_token(key)
        if user is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        token = Token(key=key, user=user, created=user.token_created)  # the raw query's column
        token._state.adding, token._state.db = False, user._state.db
        return user, token
