"""The OpenAPI document says what the service really answers: rekko's error envelope on
every error, and for each operation the statuses that real bad requests get."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rekko.service import create_app
from rekko.service.schemas import ErrorBody
from rekko.service.testing import settings_for

READ = "read-key-0123456789abcdef"
EVENTS = "events-key-0123456789abcdef"
ADMIN = "admin-key-0123456789abcdef"
KEYS = {"read": READ, "events": EVENTS, "admin": ADMIN, "none": "", "unknown": "x" * 24}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = settings_for(
        tmp_path_factory.mktemp("contract"),
        read_key=READ,
        events_key=EVENTS,
        admin_key=ADMIN,
        max_body_bytes=4096,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def document(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            yield method.upper(), path, operation


def test_no_operation_documents_the_framework_validation_error(document: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in json.dumps(document)
    assert "ValidationError" not in document["components"]["schemas"]
    operations = list(_operations(document))
    assert len(operations) >= 25
    for method, path, operation in operations:
        for status, response in operation["responses"].items():
            if not status.startswith(("4", "5")):
                continue
            schema = response["content"]["application/json"]["schema"]
            expected = "Health" if path == "/ready" else "ErrorBody"
            assert schema == {"$ref": f"#/components/schemas/{expected}"}, (method, path, status)
        if operation.get("parameters") or operation.get("requestBody"):
            assert "422" in operation["responses"], (method, path)
        if "requestBody" in operation:
            assert "413" in operation["responses"], (method, path)


#: (method, path template, path values, request options, key, expected status): real bad
#: requests, run in this order (the 409 case deletes an item first).
BAD_REQUESTS: list[tuple[str, str, dict[str, str], dict[str, Any], str, int]] = [
    ("GET", "/users/{user_id}/recommendations", {"user_id": "u0001"}, {}, "none", 401),
    ("GET", "/users/{user_id}/recommendations", {"user_id": "u0001"}, {}, "events", 403),
    ("GET", "/users/{user_id}/recommendations", {"user_id": "u0001"}, {}, "unknown", 401),
    (
        "GET",
        "/users/{user_id}/recommendations",
        {"user_id": "u1"},
        {"params": {"k": 0}},
        "read",
        422,
    ),
    (
        "GET",
        "/users/{user_id}/recommendations",
        {"user_id": "u1"},
        {"params": {"k": 101}},
        "read",
        422,
    ),
    (
        "GET",
        "/users/{user_id}/recommendations",
        {"user_id": "u0001"},
        {"params": {"version": "v9999"}},
        "read",
        404,
    ),
    ("POST", "/recommendations", {}, {"json": {}}, "read", 422),
    ("POST", "/recommendations", {}, {"content": b"{not json"}, "read", 422),
    ("POST", "/recommendations", {}, {"json": {"user_id": "u1", "version": "v9999"}}, "read", 404),
    ("POST", "/recommendations", {}, {"json": {"user_id": "u" * 5000}}, "read", 413),
    ("POST", "/recommendations/anonymous", {}, {"json": {"k": "many"}}, "read", 422),
    ("POST", "/recommendations/anonymous", {}, {"json": {}}, "events", 403),
    ("GET", "/items/{item_id}/similar", {"item_id": "nope"}, {}, "read", 404),
    (
        "GET",
        "/items/{item_id}/similar",
        {"item_id": "i0001"},
        {"params": {"filters": "["}},
        "read",
        422,
    ),
    ("POST", "/events", {}, {"json": {"events": []}}, "events", 422),
    ("POST", "/events", {}, {"json": {"events": [{"user_id": "u1"}]}}, "read", 403),
    (
        "POST",
        "/events",
        {},
        {"json": {"events": [{"user_id": "u1", "item_id": "i1"}]}},
        "none",
        401,
    ),
    ("PUT", "/items", {}, {"json": {"items": [{"item_id": ""}]}}, "admin", 422),
    ("PUT", "/items", {}, {"json": {"items": [{"item_id": "i1"}]}}, "read", 403),
    ("GET", "/items/{item_id}", {"item_id": "nope"}, {}, "read", 404),
    ("GET", "/items/{item_id}", {"item_id": "a%00b"}, {}, "read", 422),
    ("DELETE", "/items/{item_id}", {"item_id": "nope"}, {}, "admin", 404),
    ("DELETE", "/items/{item_id}", {"item_id": "i0070"}, {}, "read", 403),
    ("DELETE", "/items/{item_id}", {"item_id": "i0070"}, {}, "admin", 200),
    ("POST", "/items/{item_id}/hide", {"item_id": "i0070"}, {}, "admin", 409),
    ("POST", "/items/{item_id}/hide", {"item_id": "nope"}, {}, "admin", 404),
    ("POST", "/items/{item_id}/show", {"item_id": "i0070"}, {}, "admin", 409),
    ("POST", "/items/{item_id}/show", {"item_id": "i0001"}, {}, "events", 403),
    ("PUT", "/users", {}, {"json": {"users": "everyone"}}, "admin", 422),
    ("GET", "/users/{user_id}", {"user_id": "nope"}, {}, "read", 404),
    ("GET", "/users/{user_id}", {"user_id": "u0001"}, {}, "none", 401),
    ("POST", "/training/jobs", {}, {"json": {"algorithm": "nope"}}, "admin", 422),
    ("POST", "/training/jobs", {}, {"json": {"activate": "sometimes"}}, "admin", 422),
    ("POST", "/training/jobs", {}, {"json": {}}, "read", 403),
    ("GET", "/training/jobs", {}, {"params": {"limit": 0}}, "admin", 422),
    ("GET", "/training/jobs/{job_id}", {"job_id": "nope"}, {}, "admin", 404),
    ("POST", "/models/push", {}, {"json": {"path": "relative/folder"}}, "admin", 422),
    ("POST", "/models/push", {}, {"json": {"path": "/no/such/folder"}}, "admin", 422),
    ("POST", "/models/push", {}, {"json": {}}, "admin", 422),
    ("POST", "/models/push", {}, {"json": {"path": "/no/such/folder"}}, "read", 403),
    ("GET", "/models", {}, {}, "read", 403),
    ("GET", "/models/active", {}, {}, "none", 401),
    ("GET", "/models/{version}", {"version": "v9999"}, {}, "admin", 404),
    ("GET", "/models/{version}", {"version": "not a name!"}, {}, "admin", 422),
    ("POST", "/models/{version}/activate", {"version": "v9999"}, {}, "admin", 404),
    ("POST", "/models/rollback", {}, {}, "admin", 409),
    ("PUT", "/models/split", {}, {"json": {"version": "v9999", "share": 2}}, "admin", 422),
    ("PUT", "/models/split", {}, {"json": {"version": "v9999", "share": 0.5}}, "admin", 404),
    ("DELETE", "/models/split", {}, {}, "unknown", 401),
    ("GET", "/online-metrics", {}, {"params": {"lookback_s": 0}}, "admin", 422),
]


def _send(
    client: TestClient, method: str, template: str, values: dict[str, str], options: Any, key: str
) -> Any:
    path = template.format(**values)
    headers = {"X-API-Key": KEYS[key]} if KEYS[key] else {}
    return client.request(method, path, headers=headers, **options)


def _check_documented(document: dict[str, Any], method: str, template: str, response: Any) -> None:
    responses = document["paths"][template][method.lower()]["responses"]
    status = str(response.status_code)
    assert status in responses, f"{method} {template} answered {status}: {response.text}"
    schema = responses[status]["content"]["application/json"]["schema"]
    if schema == {"$ref": "#/components/schemas/ErrorBody"}:
        body = ErrorBody.model_validate(response.json(), strict=True)
        assert body.error and body.detail, response.text
        if response.status_code == 422:
            assert isinstance(body.detail, list) and body.detail[0].field


def test_bad_requests_get_a_documented_status_and_body(
    client: TestClient, document: dict[str, Any]
) -> None:
    for method, template, values, options, key, expected in BAD_REQUESTS:
        response = _send(client, method, template, values, options, key)
        assert response.status_code == expected, (method, template, response.text)
        _check_documented(document, method, template, response)
    guarded = {
        (method, path)
        for method, path, operation in _operations(document)
        if any(status.startswith("4") for status in operation["responses"])
    }
    covered = {(method, template) for method, template, *_ in BAD_REQUESTS}
    assert guarded <= covered, f"operations without a bad request here: {guarded - covered}"


def test_without_a_model_the_documented_503(tmp_path: Path, document: dict[str, Any]) -> None:
    settings = settings_for(tmp_path, bootstrap_demo=False)
    with TestClient(create_app(settings)) as empty:
        for method, template, options in [
            ("GET", "/users/{user_id}/recommendations", {}),
            ("POST", "/recommendations", {"json": {"user_id": "u1"}}),
            ("POST", "/recommendations/anonymous", {"json": {"query": "red"}}),
            ("GET", "/items/{item_id}/similar", {}),
            ("GET", "/ready", {}),
        ]:
            path = template.format(user_id="u1", item_id="i1")
            response = empty.request(method, path, **options)
            assert response.status_code == 503, (method, path, response.text)
            _check_documented(document, method, template, response)
