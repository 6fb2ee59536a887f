"""schemathesis fuzzes every operation of /api/schema/ as a normal user (tests/reliability/test_schema_fuzz.py).

A file of its own so that pytest-xdist (--dist loadfile) runs it beside the operator's run, not after it:
each is one long, CPU-bound test.
"""

import pytest
from django.contrib.auth import get_user_model

# The autouse fixtures apply to this module's test too once imported here.
from tests.reliability.test_schema_fuzz import _nothing_left_queued, _short_inspect_timeout, fuzz  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def test_user_fuzz_finds_no_server_error_and_no_undocumented_response(capsys):
    user = get_user_model().objects.create_user("fuzz-user", password="pw")
    fuzz(user, capsys)
