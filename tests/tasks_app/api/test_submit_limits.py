"""What one client can make the system hold: unfinished tasks per user, and submission rates (429s)."""

import pytest

from tasks_app.models import TaskRecord
from tests.tasks_app.api.conftest import API, GENERATE

pytestmark = pytest.mark.django_db(transaction=True)

# Delayed an hour: the tasks stay PENDING (unfinished) while the test runs.
DELAYED = {**GENERATE, "countdown": 3600}


@pytest.fixture
def throttle_rates(settings):
    """Set the submission rates for one test (the test settings keep them out of other tests' way)."""

    def set_rates(**rates: str) -> None:
        current = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {**current, **rates}}

    return set_rates


def test_a_user_at_the_unfinished_task_limit_gets_a_429(alice_client, alice, settings):
    # given a limit of two unfinished tasks per user, and alice with two pending ones
    settings.MAX_UNFINISHED_TASKS_PER_USER = 2
    for _ in range(2):
        assert alice_client.post(f"{API}/ai/generate", DELAYED, format="json").status_code == 202

    # when she submits a third
    response = alice_client.post(f"{API}/ai/generate", DELAYED, format="json")

    # then it is refused with a 429 that says why, and nothing was queued
    assert response.status_code == 429
    body = response.json()
    assert body["code"] == "too_many_unfinished_tasks"
    assert "2 unfinished tasks" in body["message"]
    assert "limit is 2" in body["message"]
    assert TaskRecord.objects.filter(submitted_by=alice).count() == 2


def test_finishing_a_task_makes_room_again(alice_client, settings):
    # given alice at a limit of one unfinished task
    settings.MAX_UNFINISHED_TASKS_PER_USER = 1
    first = alice_client.post(f"{API}/ai/generate", DELAYED, format="json").json()["task_id"]
    assert alice_client.post(f"{API}/ai/generate", DELAYED, format="json").status_code == 429

    # when her task is cancelled (finished: REVOKED)
    assert alice_client.post(f"{API}/cancel/{first}").status_code == 200

    # then she may submit again
    assert alice_client.post(f"{API}/ai/generate", DELAYED, format="json").status_code == 202


def test_retry_counts_against_the_limit(alice_client, settings):
    # given alice's cancelled task, and then one pending task at a limit of one
    settings.MAX_UNFINISHED_TASKS_PER_USER = 1
    cancelled = alice_client.post(f"{API}/ai/generate", DELAYED, format="json").json()["task_id"]
    alice_client.post(f"{API}/cancel/{cancelled}")
    assert alice_client.post(f"{API}/ai/generate", DELAYED, format="json").status_code == 202

    # when she retries the cancelled one
    response = alice_client.post(f"{API}/retry/{cancelled}")

    # then the retry is refused the same way
    assert response.status_code == 429
    assert response.json()["code"] == "too_many_unfinished_tasks"


def test_the_limit_is_per_user_and_staff_are_exempt(alice_client, bob_client, staff_client, settings):
    # given alice at a limit of one unfinished task
    settings.MAX_UNFINISHED_TASKS_PER_USER = 1
    assert alice_client.post(f"{API}/ai/generate", DELAYED, format="json").status_code == 202

    # then bob still may submit, and staff (who retry in bulk to recover from incidents) may exceed it
    assert (
        bob_client.post(
            f"{API}/ai/generate", {**DELAYED, "conversation_id": "conv_bob", "user_id": "bob"}, format="json"
        ).status_code
        == 202
    )
    for _ in range(3):
        response = staff_client.post(
            f"{API}/ai/generate", {**DELAYED, "conversation_id": "conv_ops", "user_id": "ops"}, format="json"
        )
        assert response.status_code == 202


def test_submissions_past_the_rate_get_a_429_with_retry_after(alice_client, bob_client, throttle_rates):
    # given a rate of two submissions a minute
    throttle_rates(ai_generate="2/min")
    for _ in range(2):
        assert alice_client.post(f"{API}/ai/generate", DELAYED, format="json").status_code == 202

    # when alice submits a third within the minute
    response = alice_client.post(f"{API}/ai/generate", DELAYED, format="json")

    # then it is throttled: a JSON 429 saying when to come back, nothing queued
    assert response.status_code == 429
    assert response.json()["code"] == "throttled"
    assert 0 < int(response["Retry-After"]) <= 60
    assert TaskRecord.objects.count() == 2
    # and the rate is counted per user
    assert (
        bob_client.post(
            f"{API}/ai/generate", {**DELAYED, "conversation_id": "conv_bob", "user_id": "bob"}, format="json"
        ).status_code
        == 202
    )


def test_retries_have_their_own_rate(alice_client, throttle_rates):
    # given a rate of one retry a minute
    throttle_rates(task_retry="1/min")
    assert alice_client.post(f"{API}/retry/no-such-task").status_code == 404

    # when alice asks for a second retry within the minute
    response = alice_client.post(f"{API}/retry/no-such-task")

    # then it is throttled, while reads and submissions are not
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert alice_client.get(f"{API}/status/no-such-task").status_code == 404
    assert alice_client.post(f"{API}/ai/generate", DELAYED, format="json").status_code == 202
