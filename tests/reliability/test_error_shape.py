"""Every endpoint answers errors in one JSON shape: {"message", "code", "errors"?} (claw_ai.errors)."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from tests.support.schema import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    return client_for(get_user_model().objects.create_user("shape", password="pw"))


def assert_error_shape(response, status: int, code: str) -> dict:
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) <= {"message", "code", "errors"}
    assert body["message"]
    assert body["code"] == code
    return body


@pytest.mark.parametrize("path", ["/api/v1/tasks/list", "/api/v1/conversations/", "/api/v1/knowledge/documents/"])
def test_unauthenticated_callers_get_the_same_shape_everywhere(path):
    assert_error_shape(APIClient().get(path), 401, "not_authenticated")


@pytest.mark.parametrize(
    "path", ["/api/v1/tasks/status/nope", "/api/v1/conversations/conv_nope/", "/api/v1/knowledge/documents/999999/"]
)
def test_unknown_objects_are_a_404_in_the_same_shape(api, path):
    assert_error_shape(api.get(path), 404, "not_found")


def test_field_errors_of_conversations_and_knowledge_are_under_errors(api):
    # when a conversation and a document are created with bad input
    conversation = api.post("/api/v1/conversations/", {"conversation_id": "bad id!"}, format="json")
    document = api.post("/api/v1/knowledge/documents/", {"user_id": "u1", "title": "Empty"}, format="json")

    # then both are 400s naming the fields, like the task endpoints
    assert set(assert_error_shape(conversation, 400, "invalid")["errors"]) == {"conversation_id", "user_id"}
    assert "content" in assert_error_shape(document, 400, "invalid")["errors"]


def test_a_body_that_is_not_json_is_a_400_in_the_same_shape(api):
    response = api.generic("POST", "/api/v1/conversations/", "{not json", content_type="application/json")

    assert_error_shape(response, 400, "parse_error")


def test_an_unknown_api_path_is_a_json_404():
    # (a plain client: the path is in no schema for the schema-checking one to check against)
    api = APIClient()
    api.force_authenticate(get_user_model().objects.create_user("lost", password="pw"))

    body = assert_error_shape(api.get("/api/v1/no-such-endpoint/"), 404, "not_found")

    assert "/api/v1/no-such-endpoint/" in body["message"]


def test_pages_outside_the_api_keep_django_s_html_404(client):
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")
