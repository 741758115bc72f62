"""The HTTP API: recommendations and their fallbacks, validation, keys, limits, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rekko.service import create_app
from rekko.service.testing import settings_for
from rekko.store import repository as repo

ADMIN = "admin-key-0123456789abcdef"
READ = "read-key-0123456789abcdef"
EVENTS = "events-key-0123456789abcdef"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One app on the demo shop for the read-only tests of this module."""
    settings = settings_for(tmp_path_factory.mktemp("api"), max_k=50)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[TestClient]:
    """An app of its own, for tests that change the catalogue."""
    with TestClient(create_app(settings_for(tmp_path))) as test_client:
        yield test_client


def _items(body: Any) -> list[str]:
    return [item["item_id"] for item in body["items"]]


def _seen(client: TestClient, user_id: str) -> set[str]:
    return set(repo.user_items(client.app.state.service.engine, user_id))  # type: ignore[attr-defined]


def test_health_ready_and_docs(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "ok"
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["model_version"]
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert "/users/{user_id}/recommendations" in paths and "/events" in paths


def test_recommendations_for_a_known_user(client: TestClient) -> None:
    response = client.get("/users/u0001/recommendations", params={"k": 7, "fields": "title,price"})
    assert response.status_code == 200
    body = response.json()
    assert body["fallback"] is None and body["user_id"] == "u0001"
    assert [item["rank"] for item in body["items"]] == list(range(1, 8))
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert set(_items(body)).isdisjoint(_seen(client, "u0001"))
    assert set(body["items"][0]["fields"]) == {"title", "price"}
    assert body["model_version"] == client.get("/ready").json()["model_version"]


def test_post_form_filters_and_exclusions(client: TestClient) -> None:
    plain = _items(client.get("/users/u0002/recommendations", params={"k": 5}).json())
    body = client.post(
        "/recommendations",
        json={"user_id": "u0002", "k": 5, "exclude": plain[:2], "fields": ["price"]},
    ).json()
    assert set(_items(body)).isdisjoint(plain[:2])
    cheap = client.get(
        "/users/u0002/recommendations",
        params={"k": 5, "filters": json.dumps({"price": {"max": 15}}), "fields": "price"},
    ).json()
    assert cheap["items"] and all(item["fields"]["price"] <= 15 for item in cheap["items"])


def test_unknown_user_gets_popular_items_not_an_error(client: TestClient) -> None:
    body = client.get(
        "/users/never-seen/recommendations",
        params={"k": 4, "filters": '{"category": "books"}', "fields": "category"},
    ).json()
    assert body["fallback"] == "popularity"
    assert len(body["items"]) == 4
    assert {item["fields"]["category"] for item in body["items"]} == {"books"}


def test_anonymous_visitors(client: TestClient) -> None:
    text = client.post(
        "/recommendations/anonymous", json={"query": "vintage novel", "k": 3, "fields": ["title"]}
    ).json()
    # the default hybrid reads text with its content component: no fallback
    assert text["fallback"] is None and text["note"] is None
    assert all(
        {"vintage", "novel"} & set(item["fields"]["title"].split()) for item in text["items"]
    )
    stated = client.post(
        "/recommendations/anonymous",
        json={"preferences": {"category": "garden"}, "k": 3, "fields": ["category"]},
    ).json()
    assert stated["fallback"] is None
    assert {item["fields"]["category"] for item in stated["items"]} == {"garden"}
    basket = client.post(
        "/recommendations/anonymous", json={"items": ["i0001", "i0002"], "k": 5}
    ).json()
    assert basket["fallback"] == "basket" and len(basket["items"]) == 5
    assert {"i0001", "i0002"}.isdisjoint(_items(basket))
    nothing = client.post("/recommendations/anonymous", json={"k": 2}).json()
    assert nothing["fallback"] == "popularity" and len(nothing["items"]) == 2


def test_similar_items(client: TestClient) -> None:
    body = client.get("/items/i0003/similar", params={"k": 4, "fields": "title"}).json()
    assert body["item_id"] == "i0003" and len(body["items"]) == 4
    assert "i0003" not in _items(body)
    missing = client.get("/items/nope/similar")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def test_validation_errors_name_the_field(client: TestClient) -> None:
    too_many = client.get("/users/u0001/recommendations", params={"k": 51})
    assert too_many.status_code == 422
    assert too_many.json()["detail"] == [{"field": "query.k", "reason": "k must be at most 50"}]
    zero = client.get("/users/u0001/recommendations", params={"k": 0}).json()
    assert zero["detail"][0]["field"] == "query.k"
    bad_json = client.get("/users/u0001/recommendations", params={"filters": "{price"}).json()
    assert bad_json["detail"][0]["field"] == "query.filters"
    unknown = client.post(
        "/recommendations", json={"user_id": "u0001", "filters": {"colour": "red"}}
    ).json()
    assert unknown["detail"][0]["field"] == "body.filters"
    assert "colour" in unknown["detail"][0]["reason"]
    extra = client.post("/recommendations", json={"user_id": "u1", "kk": 3}).json()
    assert extra["detail"][0]["field"] == "body.kk"
    events = client.post(
        "/events", json={"events": [{"user_id": "u1", "item_id": "", "value": "x"}]}
    ).json()
    fields = {problem["field"] for problem in events["detail"]}
    assert fields == {"body.events.0.item_id", "body.events.0.value"}
    times = client.post(
        "/events",
        json={
            "events": [
                {"user_id": "u1", "item_id": "i1", "time": 1e300},
                {"user_id": "u1", "item_id": "i1", "time": -1e20},
                {"user_id": "u1", "item_id": "i1", "time": 1_700_000_000_000},  # milliseconds
            ]
        },
    )
    assert times.status_code == 422
    assert {problem["field"] for problem in times.json()["detail"]} == {
        "body.events.0.time",
        "body.events.1.time",
    }
    not_json = client.post("/events", content=b"{", headers={"content-type": "application/json"})
    assert not_json.status_code == 422
    version = client.get("/users/u0001/recommendations", params={"version": "missing"})
    assert version.status_code == 404
    not_a_name = client.get("/users/u0001/recommendations", params={"version": "../x"})
    assert not_a_name.status_code == 422
    assert not_a_name.json()["detail"][0]["field"] == "query.version"
    for preferences, word in (({"colour": "red"}, "colour"), ({"price": {"max": "x"}}, "price")):
        stated = client.post("/recommendations/anonymous", json={"preferences": preferences})
        assert stated.status_code == 422, stated.text
        problem = stated.json()["detail"][0]
        assert problem["field"] == "body.preferences" and word in problem["reason"], problem
    both = client.post(
        "/recommendations/anonymous",
        json={"preferences": {"colour": "red"}, "filters": {"price": {"max": 50}}},
    )
    assert both.json()["detail"][0]["field"] == "body.preferences"


def test_limits_on_body_size_and_batch(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, max_body_bytes=2048, max_batch=3)
    with TestClient(create_app(settings)) as client:
        events = [{"user_id": "u0001", "item_id": f"i{n:04d}"} for n in range(4)]
        batch = client.post("/events", json={"events": events})
        assert batch.status_code == 422
        assert batch.json()["detail"][0] == {
            "field": "body.events",
            "reason": "at most 3 events per call",
        }
        big = {"events": [{"user_id": "u" * 200, "item_id": "i"}] * 20}
        assert client.post("/events", json=big).status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
            yield json.dumps(big).encode()

        streamed = client.post(
            "/events", content=chunks(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413
        assert streamed.json()["error"] == "payload_too_large"


def test_keys_per_scope(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, read_key=READ, events_key=EVENTS, admin_key=ADMIN)
    with TestClient(create_app(settings)) as client:
        path = "/users/u0001/recommendations"
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"X-API-Key": "wrong"}).status_code == 401
        assert client.get(path, headers={"X-API-Key": READ}).status_code == 200
        assert client.get(path, headers={"Authorization": f"Bearer {READ}"}).status_code == 200
        assert client.get(path, headers={"X-API-Key": ADMIN}).status_code == 200
        event = {"events": [{"user_id": "u0001", "item_id": "i0001"}]}
        assert client.post("/events", json=event, headers={"X-API-Key": READ}).status_code == 403
        assert client.post("/events", json=event, headers={"X-API-Key": EVENTS}).status_code == 200
        assert client.get("/models", headers={"X-API-Key": EVENTS}).status_code == 403
        assert client.get("/models", headers={"X-API-Key": ADMIN}).status_code == 200
        assert client.get("/health").status_code == 200  # probes need no key


def test_unexpected_errors_are_a_bare_500(tmp_path: Path) -> None:
    with TestClient(create_app(settings_for(tmp_path)), raise_server_exceptions=False) as client:
        served = client.app.state.service.pool.active  # type: ignore[attr-defined]

        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("secret internals at /srv/app.py line 3")

        served.recommend_user = broken
        response = client.get("/users/u0001/recommendations")
        assert response.status_code == 500
        assert response.json() == {
            "error": "internal",
            "detail": "internal error (details are in the server log)",
        }
        assert "secret" not in response.text and "Traceback" not in response.text


def test_hidden_and_deleted_items_are_never_recommended(fresh: TestClient) -> None:
    top = _items(fresh.get("/users/never-seen/recommendations", params={"k": 3}).json())
    assert fresh.post(f"/items/{top[0]}/hide").json()["status"] == "hidden"
    assert fresh.delete(f"/items/{top[1]}").json()["status"] == "deleted"
    for path in ("/users/never-seen/recommendations", "/users/u0005/recommendations"):
        got = _items(fresh.get(path, params={"k": 50}).json())
        assert top[0] not in got and top[1] not in got
    basket = fresh.post("/recommendations/anonymous", json={"items": [top[2]], "k": 50}).json()
    assert top[0] not in _items(basket)
    assert fresh.post(f"/items/{top[0]}/show").json()["status"] == "active"
    again = _items(fresh.get("/users/never-seen/recommendations", params={"k": 3}).json())
    assert top[0] in again
    assert fresh.post("/items/nope/hide").status_code == 404


def test_catalogue_and_users_upsert(fresh: TestClient) -> None:
    created = fresh.put(
        "/items", json={"items": [{"item_id": "new-1", "features": {"title": "Lamp"}}]}
    ).json()
    assert created == {"inserted": 1, "updated": 0}
    updated = fresh.put(
        "/items",
        json={"items": [{"item_id": "new-1", "features": {"title": "Desk lamp"}, "hidden": True}]},
    ).json()
    assert updated == {"inserted": 0, "updated": 1}
    item = fresh.get("/items/new-1").json()
    assert item == {"item_id": "new-1", "status": "hidden", "features": {"title": "Desk lamp"}}
    assert (
        fresh.put("/users", json={"users": [{"user_id": 7, "features": {"age": 30}}]}).json()[
            "inserted"
        ]
        == 1
    )
    assert fresh.get("/users/7").json() == {"user_id": "7", "features": {"age": 30}}
    assert fresh.get("/users/8").status_code == 404


def test_prometheus_metrics(client: TestClient) -> None:
    client.get("/users/u0001/recommendations")
    text = client.get("/metrics").text
    assert 'rekko_http_requests_total{method="GET",route="/users/{user_id}/recommendations"' in text
    assert "rekko_http_request_duration_seconds_bucket" in text
    version = client.get("/ready").json()["model_version"]
    assert f'rekko_model_active{{version="{version}"}} 1.0' in text
    assert "rekko_events_stored_total" in text


def test_a_new_user_whose_events_name_only_unknown_items_is_served(fresh: TestClient) -> None:
    """The fuzzer's 500: fold-in took the user in without any event it could apply."""
    event = {"user_id": "0", "item_id": "no-such-item", "type": "view", "event_id": "fz-1"}
    assert fresh.post("/events", json={"events": [event]}).status_code == 200
    version = fresh.get("/ready").json()["model_version"]
    for pinned in (None, version):
        body = {"user_id": "0", "k": 3, **({"version": pinned} if pinned else {})}
        answer = fresh.post("/recommendations", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["fallback"] == "popularity" and len(answer.json()["items"]) == 3
    known = {"user_id": "0", "item_id": "i0001", "type": "view", "event_id": "fz-2"}
    assert fresh.post("/events", json={"events": [known]}).status_code == 200
    again = fresh.post("/recommendations", json={"user_id": "0", "k": 3}).json()
    assert again["fallback"] is None and "i0001" not in _items(again)  # folded in at once
