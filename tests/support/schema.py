"""Check API responses against the OpenAPI schema the project serves at /api/schema/.

`SchemaCheckingClient` is an APIClient that validates every JSON response of
/api/v1/ against the schema of its path, method and status code, with
jsonschema. Object schemas are made strict (no undocumented fields), so the
schema must describe every response exactly.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import jsonschema
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient


def _to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema: `nullable`, and strict objects."""
    if isinstance(node, list):
        return [_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _to_json_schema(value) for key, value in node.items() if key not in ("nullable",)}
    if converted.get("type") == "object" and "properties" in converted:
        converted.setdefault("additionalProperties", False)
    if node.get("nullable"):
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


@functools.cache
def openapi() -> dict[str, Any]:
    return SchemaGenerator().get_schema(request=None, public=True)


@functools.cache
def _components() -> dict[str, Any]:
    return _to_json_schema(openapi().get("components", {}))


def _path_pattern(template: str) -> re.Pattern:
    pattern = re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template.rstrip("/")))
    return re.compile(f"^{pattern}/?$")


def operation_for(path: str, method: str) -> dict[str, Any]:
    for template, operations in openapi()["paths"].items():
        if _path_pattern(template).match(path) and method.lower() in operations:
            return operations[method.lower()]
    raise AssertionError(f"{method} {path} is not in the OpenAPI schema")


def response_schema(path: str, method: str, status_code: int) -> dict[str, Any]:
    responses = operation_for(path, method)["responses"]
    documented = responses.get(str(status_code))
    if documented is None:
        raise AssertionError(f"{method} {path} answered {status_code}, not documented (has {sorted(responses)})")
    return documented["content"]["application/json"]["schema"]


def assert_matches_schema(response) -> None:
    path, method = response.request["PATH_INFO"], response.request["REQUEST_METHOD"]
    schema = {**_to_json_schema(response_schema(path, method, response.status_code)), "components": _components()}
    jsonschema.validate(response.json(), schema)


class SchemaCheckingClient(APIClient):
    """An APIClient whose every /api/v1/ JSON response is checked against the OpenAPI schema."""

    def request(self, **kwargs):
        response = super().request(**kwargs)
        is_json = response.get("Content-Type", "").startswith("application/json")
        if response.request["PATH_INFO"].startswith("/api/v1/") and is_json:
            assert_matches_schema(response)
        return response


def client_for(user) -> SchemaCheckingClient:
    """A schema-checking client authenticated as `user` with a DRF token, as API callers are."""
    from rest_framework.authtoken.models import Token

    client = SchemaCheckingClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client
