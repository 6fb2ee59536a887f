"""A JSON body nested too deep is a 400 the caller can act on, not a 500 (claw_ai.parsers)."""

import json

import pytest
from django.contrib.auth import get_user_model

from tests.support.schema import client_for

pytestmark = pytest.mark.django_db

GENERATE = "/api/v1/tasks/ai/generate"
DOCUMENTS = "/api/v1/knowledge/documents/"
LIMIT = 32  # API_MAX_JSON_DEPTH's default


@pytest.fixture
def api():
    return client_for(get_user_model().objects.create_user("deep-sender", password="pw"))


def nested_list(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def post_json(api, path: str, body: str):
    return api.generic("POST", path, body, content_type="application/json")


@pytest.mark.parametrize("path", [GENERATE, DOCUMENTS])
@pytest.mark.parametrize("body", [nested_list(1000), nested_object(1000)], ids=["arrays", "objects"])
def test_a_body_nested_a_thousand_deep_is_a_400_saying_why(api, path, body):
    response = post_json(api, path, body)

    assert response.status_code == 400
    assert response.json() == {
        "message": f"JSON nested too deeply: arrays and objects may nest at most {LIMIT} levels.",
        "code": "json_too_deep",
    }


def test_one_level_past_the_limit_is_refused(api):
    # the body's own object is the first level
    body = json.dumps({"user_id": "u1", "user_message": json.loads(nested_list(LIMIT))})

    assert post_json(api, GENERATE, body).json()["code"] == "json_too_deep"


def test_a_body_at_the_limit_gets_the_endpoints_own_validation(api):
    # given a body exactly as deep as allowed, with a field of the wrong type
    body = json.dumps({"user_id": "u1", "user_message": json.loads(nested_list(LIMIT - 1))})

    # then the endpoint reads it and says which field is wrong
    response = post_json(api, GENERATE, body)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert set(response.json()["errors"]) >= {"user_message"}


def test_brackets_inside_strings_are_text_not_nesting(api):
    # given a message that is a thousand brackets, quotes and escapes, and a wrong temperature
    text = '\\"[' * 1000 + "{" * 1000
    body = json.dumps({"user_id": "u1", "conversation_id": "c1", "user_message": text, "temperature": "hot"})

    # then the body is read: only the temperature is wrong
    response = post_json(api, GENERATE, body)
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"temperature"}


def test_the_limit_is_a_setting(api, settings):
    settings.API_MAX_JSON_DEPTH = 3

    response = post_json(api, DOCUMENTS, json.dumps({"user_id": "u1", "content": [[["x"]]]}))

    assert response.status_code == 400
    assert "at most 3 levels" in response.json()["message"]


def test_a_body_that_is_not_json_is_still_a_parse_error(api):
    response = post_json(api, DOCUMENTS, '{"user_id": "u1", "content": "unterminated [[[')

    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


def test_the_refusal_is_explained_in_chinese(api):
    response = api.generic(
        "POST", DOCUMENTS, nested_list(1000), content_type="application/json", HTTP_ACCEPT_LANGUAGE="zh-CN"
    )

    assert response.json()["message"] == f"JSON 嵌套过深：数组和对象最多只能嵌套 {LIMIT} 层。"
