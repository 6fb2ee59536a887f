"""The API token's user, read by one hand-written statement (claw_ai.queries)."""

import pytest
from rest_framework.authtoken.models import Token

from claw_ai.queries import user_by_token

pytestmark = pytest.mark.django_db


def test_a_token_reads_its_user_and_the_tokens_creation(alice, bob):
    token = Token.objects.create(user=alice)
    Token.objects.create(user=bob)

    user = user_by_token(token.key)

    assert (user.pk, user.username, user.token_created) == (alice.pk, "alice", token.created)


def test_an_unknown_token_reads_no_one(alice):
    Token.objects.create(user=alice)
    assert user_by_token("0" * 40) is None
