"""schemathesis fuzzes every operation of /api/schema/: no 5xx, and every response is one the schema documents.

Valid requests (as the schema describes them) must get a documented status, content type and body;
invalid ones (schemathesis' negative mode) must at least never get a 5xx. The cases run in-process
over WSGI against the test database (committed, as in production: the services publish only outside
a transaction); what they queue is purged at the end. The staff run leaves out the two operations
that would stop or restart a worker (POST /workers/shutdown, /workers/pool/restart); the normal
user's run keeps them, since they must be refused (403) before anything happens.

Every operation that takes a body (POST, PUT, PATCH) also gets JSON nested a thousand deep, with
path parameters naming the caller's own task and document so the request gets past its 404 to
the parser: a 4xx, never a 5xx (Python's decoder recursed on these until claw_ai.parsers).
"""

import re
import time
from collections import Counter

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from claw_ai.celery import celery_app
from conversations.models import KnowledgeDocument
from tasks_app.models import TaskRecord, TaskState
from tests.tasks_app.api.conftest import grant_operator

pytestmark = pytest.mark.django_db(transaction=True)

# Cases per operation: enough to find the common mistakes, few enough to keep `make test` fast.
VALID_EXAMPLES = 20
INVALID_EXAMPLES = 5
WORKER_CONTROL = r"/api/v1/tasks/workers/(pool/restart|shutdown)/?$"
# No server error, and status code, content type, headers and body all as the schema documents.
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
PASSES = [
    (GenerationMode.POSITIVE, VALID_EXAMPLES, CONFORMANCE),
    # An invalid request may miss the URL patterns (Django's HTML 404): only a 5xx is a failure here.
    (GenerationMode.NEGATIVE, INVALID_EXAMPLES, [not_a_server_error]),
]
DEEP_BODIES = ("[" * 1000 + "]" * 1000, '{"a":' * 1000 + "1" + "}" * 1000)
WITH_BODY = {"POST", "PUT", "PATCH"}


@pytest.fixture(autouse=True)
def _short_inspect_timeout(settings):
    """GET /workers waits the whole inspect timeout on every call; the fuzzer needs the answer, not the wait."""
    settings.WORKER_INSPECT_TIMEOUT = 0.1


@pytest.fixture(autouse=True)
def _nothing_left_queued():
    """The fuzzer's accepted submissions are not this test's subject: drop whatever is still queued."""
    yield
    celery_app.control.purge()


def own_tasks(user) -> list[str]:
    """Tasks of the caller in every state, so /status, /cancel and /retry get past their 404 too."""
    ids = []
    for state in TaskState.values:
        record = TaskRecord.objects.create(
            task_id=f"fuzz-{user.username}-{state.lower()}",
            task_name="tests.fail",  # a retry sends it again: it fails at once, harmlessly
            args=["a fuzzed retry"],
            queue="default",
            submitted_by=user,
            state=state,
        )
        ids.append(record.task_id)
    return ids


def with_known_task_ids(strategy, task_ids: list[str]):
    def use(pair):
        case, task_id = pair
        case.path_parameters = {**case.path_parameters, "task_id": task_id}
        return case

    return st.one_of(strategy, st.tuples(strategy, st.sampled_from(task_ids)).map(use))


def has_invalid_requests(operation) -> bool:
    """Whether schemathesis' negative mode can build a request the operation's schema forbids.

    Not when the only inputs are string path parameters (or none): a string outside a path
    parameter's schema holds a '/', so names another URL, and hypothesis draws cases, rejects them
    all and gives up (Unsatisfiable): about a second each for /cancel, /retry and /status, for nothing.
    """
    raw = operation.definition.raw
    return "requestBody" in raw or any(
        parameter["in"] != "path" or parameter.get("schema", {}).get("type") != "string"
        for parameter in raw.get("parameters") or []
    )


def run_cases(operation, mode, examples: int, checks, headers: dict, statuses: Counter, task_ids: list[str]) -> int:
    """Run one operation's generated cases; returns how many ran."""
    ran = 0
    if mode is GenerationMode.NEGATIVE and not has_invalid_requests(operation):
        return ran
    strategy = operation.as_strategy(generation_mode=mode)
    if mode is GenerationMode.POSITIVE and "{task_id}" in operation.path:
        strategy = with_known_task_ids(strategy, task_ids)

    @given(case=strategy)
    @hypothesis_settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def run(case):
        nonlocal ran
        response = case.call_and_validate(headers=headers, checks=checks)
        ran += 1
        statuses[response.status_code] += 1

    try:
        run()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE  # an operation without inputs has no invalid request
    return ran


def run_deep_bodies(operation, headers: dict, statuses: Counter, known_ids: dict[str, str]) -> int:
    """Send each deeply nested JSON body to an operation that takes a body; returns how many were sent."""
    if operation.method.upper() not in WITH_BODY:
        return 0
    # Sent as raw bytes: schemathesis would serialize a Python value with json.dumps, which recurses too.
    path_parameters = {name: known_ids[name] for name in re.findall(r"{(\w+)}", operation.path)}
    for body in DEEP_BODIES:
        case = operation.Case(path_parameters=path_parameters)
        response = case.call_and_validate(
            headers={**headers, "Content-Type": "application/json"}, checks=[not_a_server_error], data=body.encode()
        )
        statuses[response.status_code] += 1
    return len(DEEP_BODIES)


def fuzz(user, capsys, *, exclude_path_regex: str | None = None) -> None:
    token, _ = Token.objects.get_or_create(user=user)
    headers = {"Authorization": f"Token {token.key}"}
    task_ids = own_tasks(user)
    cases: Counter[str] = Counter()
    statuses: Counter[int] = Counter()

    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application(), headers=headers)
    if exclude_path_regex:
        schema = schema.exclude(path_regex=exclude_path_regex)
    operations = [result.ok() for result in schema.get_all_operations()]
    started = time.monotonic()
    for mode, examples, checks in PASSES:
        for operation in operations:
            cases[operation.label] += run_cases(operation, mode, examples, checks, headers, statuses, task_ids)
    # (created only now, so the generated cases cannot have changed or deleted it)
    document = KnowledgeDocument.objects.create(user_id="fuzz", title="Deep", content="text", created_by=user)
    known_ids = {"task_id": task_ids[0], "id": str(document.pk)}
    for operation in operations:
        cases[operation.label] += run_deep_bodies(operation, headers, statuses, known_ids)
    elapsed = time.monotonic() - started

    with capsys.disabled():
        print(
            f"\nschemathesis ({'staff' if user.is_staff else 'user'}): {sum(cases.values())} cases over "
            f"{len(operations)} operations in {elapsed:.1f}s; statuses {dict(sorted(statuses.items()))}"
        )
    assert all(cases[operation.label] for operation in operations), "every operation ran"


def test_operator_fuzz_finds_no_server_error_and_no_undocumented_response(capsys):
    # an operator: every named permission, so the cross-tenant paths (?tenant=) are fuzzed too
    staff = grant_operator(get_user_model().objects.create_user("fuzz-staff", password="pw", is_staff=True))
    fuzz(staff, capsys, exclude_path_regex=WORKER_CONTROL)
