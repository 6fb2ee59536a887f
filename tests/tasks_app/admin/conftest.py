import re

import pytest
from django.test import Client

from tests.factories import SuperuserFactory

CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@pytest.fixture
def admin_user(db):
    return SuperuserFactory(username="operator", password="operator-pass")


@pytest.fixture
def admin_client(admin_user) -> Client:
    """A logged-in admin client that enforces CSRF like a browser meets it."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    return client


def csrf_token_of(response) -> str:
    """The CSRF token of the form a page rendered (fetch the form first, as a browser does)."""
    match = CSRF_INPUT.search(response.content.decode())
    assert match, "no CSRF token in the page"
    return match.group(1)
