"""What a client can make the server hold is bounded."""

import json

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


@pytest.fixture
def client() -> APIClient:
    user = get_user_model().objects.create_user(username="big-sender", password="x")
    api = APIClient()
    api.force_authenticate(user)
    return api


def test_a_body_over_the_limit_is_refused_with_413(client, settings):
    # given a body one byte over the configured limit
    settings.MAX_REQUEST_BODY_BYTES = 1000
    body = json.dumps({"user_message": "x" * 1000})

    # when it is posted
    response = client.post("/api/v1/tasks/ai/generate", data=body, content_type="application/json")

    # then it is refused before any view reads it, with a message a person can act on
    # (in the API's one error shape, like every other error)
    assert response.status_code == 413
    body = response.json()
    assert body["code"] == "request_too_large"
    assert "limit is 1000 bytes" in body["message"]


def test_a_garbled_content_length_is_a_400(client):
    response = client.generic(
        "POST", "/api/v1/tasks/ai/generate", data="{}", content_type="application/json", CONTENT_LENGTH="ten"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_content_length"
