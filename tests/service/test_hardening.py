"""Inputs that once broke the service for good: each answers a clear 4xx (or is made
harmless) and the service keeps working afterwards, also across a restart."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from rekko.errors import DataError
from rekko.service import create_app, serving, training
from rekko.service.settings import ServeSettings
from rekko.service.testing import settings_for, temporary_database, wait_for_job
from rekko.service.training import TrainingOutcome, TrainingRequest
from rekko.store import repository as repo


@pytest.fixture
def settings(tmp_path: Path) -> ServeSettings:
    return settings_for(tmp_path)


@pytest.fixture
def client(settings: ServeSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One app for the tests of rejected input (which store nothing)."""
    with TestClient(create_app(settings_for(tmp_path_factory.mktemp("shared")))) as test_client:
        yield test_client


def _event(**changes: Any) -> dict[str, Any]:
    return {"user_id": "u0001", "item_id": "i0001", **changes}


def _problem(response: Any) -> tuple[str, str]:
    """The (field, reason) of a 422 that names one problem."""
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_request"
    [problem] = body["detail"]
    return problem["field"], problem["reason"]


def _finite_recommendations(client: TestClient, user_id: str = "u0002") -> list[float]:
    response = client.get(f"/users/{user_id}/recommendations", params={"k": 5})
    assert response.status_code == 200, response.text
    scores = [item["score"] for item in response.json()["items"]]
    assert scores and all(math.isfinite(score) for score in scores)
    return scores


def _state(client: TestClient) -> Any:
    return client.app.state.service  # type: ignore[attr-defined]


# -- 1: event values the model's float32 cannot hold ---------------------------------------
@pytest.mark.parametrize(
    ("value", "event_type"), [(1e39, "view"), (1e308, "transaction"), (1e30, "transaction")]
)
def test_event_value_beyond_float32_is_rejected(
    shared: TestClient, value: float, event_type: str
) -> None:
    client = shared
    engine = _state(client).engine
    before = repo.count_events(engine)
    response = client.post("/events", json={"events": [_event(value=value, type=event_type)]})
    field, reason = _problem(response)
    assert field == "body.events.0.value" and "at most" in reason
    assert repo.count_events(engine) == before
    ok = client.post("/events", json={"events": [_event(value=1e29, type="view")]})
    assert ok.status_code == 200 and ok.json()["stored"] == 1


def test_huge_stored_value_is_clipped_not_poisoning_the_model(
    settings: ServeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(create_app(settings)) as client:
        state = _state(client)
        # Stored before values were bounded: 1e308 x weight 5 is infinite.
        stored = [repo.NewEvent("u0002", "i0003", "transaction", 1e308, 1.7e9)]
        repo.add_events(state.engine, stored)
        ok = client.post("/events", json={"events": [_event()]})
        assert ok.status_code == 200, ok.text
        assert "clipped" in caplog.text
        _finite_recommendations(client)
        job = client.post("/training/jobs").json()["job_id"]
        assert wait_for_job(client, job)["status"] == "succeeded"
        _finite_recommendations(client)
    with TestClient(create_app(settings)) as restarted:  # the next start works
        assert restarted.get("/ready").status_code == 200
        assert restarted.post("/events", json={"events": [_event()]}).status_code == 200
        _finite_recommendations(restarted)


# -- 2: event types ------------------------------------------------------------------------
@pytest.mark.parametrize("event_type", [" ", "\t\n", "\x00", "view\x01", "", "-view", "a" * 65])
def test_event_type_must_be_a_name(shared: TestClient, event_type: str) -> None:
    response = shared.post("/events", json={"events": [_event(type=event_type)]})
    assert _problem(response)[0] == "body.events.0.type"


def test_event_type_is_stripped_and_may_have_inner_spaces(client: TestClient) -> None:
    response = client.post("/events", json={"events": [_event(type=" add to cart ", event_id="e")]})
    assert response.status_code == 200, response.text
    [row] = repo.events_after(_state(client).engine, repo.last_event_id(_state(client).engine) - 1)
    assert row.event_type == "add to cart"


def test_training_leaves_out_blank_event_types_already_stored(client: TestClient) -> None:
    repo.add_events(_state(client).engine, [repo.NewEvent("u0002", "i0003", " ", 1.0, 1.7e9)])
    job = client.post("/training/jobs").json()["job_id"]
    assert wait_for_job(client, job)["status"] == "succeeded"


# -- 3: ids with control characters ---------------------------------------------------------
BAD_IDS = ["a\x00b", "\x00", "x\x1fy", "del\x7f", "c1\x85c"]


def test_ids_with_control_characters_are_rejected(client: TestClient) -> None:
    for bad in BAD_IDS:
        _check_bad_id(client, bad)


def _check_bad_id(client: TestClient, bad: str) -> None:
    assert _problem(client.post("/events", json={"events": [_event(user_id=bad)]}))[0] == (
        "body.events.0.user_id"
    )
    assert _problem(client.post("/events", json={"events": [_event(item_id=bad)]}))[0] == (
        "body.events.0.item_id"
    )
    assert _problem(client.post("/events", json={"events": [_event(event_id=bad)]}))[0] == (
        "body.events.0.event_id"
    )
    assert _problem(client.put("/items", json={"items": [{"item_id": bad}]}))[0] == (
        "body.items.0.item_id"
    )
    assert _problem(client.put("/users", json={"users": [{"user_id": bad}]}))[0] == (
        "body.users.0.user_id"
    )
    assert _problem(client.post("/recommendations", json={"user_id": bad}))[0] == "body.user_id"
    quoted = quote(bad, safe="")
    for path, field in [
        (f"/users/{quoted}/recommendations", "path.user_id"),
        (f"/items/{quoted}/similar", "path.item_id"),
        (f"/users/{quoted}", "path.user_id"),
        (f"/items/{quoted}", "path.item_id"),
        (f"/training/jobs/{quoted}", "path.job_id"),
        (f"/dashboard/users/{quoted}", "path.user_id"),
        (f"/dashboard/items/{quoted}", "path.item_id"),
    ]:
        assert _problem(client.get(path))[0] == field, path
    assert _problem(client.post(f"/items/{quoted}/hide"))[0] == "path.item_id"
    assert _problem(client.delete(f"/items/{quoted}"))[0] == "path.item_id"
    assert client.post("/events", json={"events": [_event()]}).status_code == 200
    _finite_recommendations(client)


@pytest.fixture
def postgresql_url() -> Iterator[str]:
    try:
        with temporary_database("postgresql") as url:
            yield url
    except OperationalError as error:
        if os.environ.get("CI"):  # CI has the server: a missing one is a failure there
            raise
        pytest.skip(f"postgresql server not reachable: {error.orig}")


@pytest.mark.db
def test_nul_ids_are_rejected_on_postgresql(postgresql_url: str, tmp_path: Path) -> None:
    with TestClient(create_app(settings_for(tmp_path, database_url=postgresql_url))) as client:
        _check_bad_id(client, "a\x00b")


# -- 4: event times ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "time",
    [
        True,
        False,
        "0001-01-01T00:00:00",
        "9999-12-31T23:59:59Z",
        "1969-12-31T23:59:59Z",
        "2200-01-02T00:00:00+00:00",
        -1,
        1e20,
    ],
)
def test_event_time_outside_1970_to_2200_is_rejected(shared: TestClient, time: Any) -> None:
    assert _problem(shared.post("/events", json={"events": [_event(time=time)]}))[0] == (
        "body.events.0.time"
    )


@pytest.mark.parametrize("time", ["2024-05-01T12:00:00+02:00", "1970-01-01T00:00:00", 1.7e12])
def test_event_time_in_range_is_accepted(shared: TestClient, time: Any) -> None:
    assert shared.post("/events", json={"events": [_event(time=time)]}).status_code == 200


# -- 6: deleted items ------------------------------------------------------------------------
def test_a_deleted_item_stays_deleted(client: TestClient) -> None:
    assert client.delete("/items/i0005").json()["status"] == "deleted"
    for action in ("show", "hide"):
        response = client.post(f"/items/i0005/{action}")
        assert response.status_code == 409, response.text
        assert response.json()["error"] == "conflict" and "deleted" in response.json()["detail"]
    put = client.put("/items", json={"items": [{"item_id": "i0005", "features": {"a": 1}}]})
    assert put.status_code == 200
    shown = client.put("/items", json={"items": [{"item_id": "i0005", "hidden": False}]})
    assert shown.status_code == 200
    assert client.get("/items/i0005").json() == {
        "item_id": "i0005",
        "status": "deleted",
        "features": {},
    }
    assert client.delete("/items/i0005").status_code == 200  # deleting again is harmless
    assert client.post("/items/nope/show").status_code == 404
    for user in ("u0001", "u0002", "u0003"):
        items = client.get(f"/users/{user}/recommendations", params={"k": 50}).json()["items"]
        assert "i0005" not in {item["item_id"] for item in items}


# -- 7: what a failed training job reports ---------------------------------------------------
@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (
            OSError("[Errno 13] Permission denied: '/srv/rekko/models/versions/v9/model'"),
            "OSError (details are in the server log)",
        ),
        (
            DataError("cannot read /srv/rekko/data/events.parquet\nTraceback (most recent call)"),
            "cannot read .../events.parquet",
        ),
    ],
)
def test_failed_job_reports_a_safe_message(
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    raised: Exception,
    expected: str,
) -> None:
    def fail(request: TrainingRequest) -> TrainingOutcome:
        raise raised

    monkeypatch.setattr(training, "train_version", fail)
    job = wait_for_job(client, client.post("/training/jobs").json()["job_id"])
    assert job["status"] == "failed" and job["error"] == expected
    assert "/srv/rekko" in caplog.text  # the details are in the log


# -- 8: training jobs coalesce; the sync loop survives a failing step ------------------------
def test_training_jobs_coalesce_per_configuration(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()

    def slow(request: TrainingRequest) -> TrainingOutcome:
        release.wait(30)
        raise DataError("stopped by the test")

    monkeypatch.setattr(training, "train_version", slow)
    try:
        first = client.post("/training/jobs", json={"algorithm": "popularity"})
        assert first.status_code == 202
        again = client.post("/training/jobs", json={"algorithm": "popularity"})
        assert again.status_code == 409, again.text
        assert again.json()["error"] == "conflict"
        assert again.json()["job_id"] == first.json()["job_id"]
        other = client.post("/training/jobs", json={"algorithm": "popularity", "params": {}})
        assert other.status_code == 409  # the same parameters as the server's default
        queued = client.post("/training/jobs", json={"algorithm": "als", "params": {"factors": 8}})
        assert queued.status_code == 202
        repeat = client.post("/training/jobs", json={"algorithm": "als", "params": {"factors": 8}})
        assert repeat.status_code == 409 and repeat.json()["job_id"] == queued.json()["job_id"]
        more = [
            client.post("/training/jobs", json={"algorithm": "als", "params": {"factors": n}})
            for n in (9, 10)
        ]
        assert [response.status_code for response in more] == [202, 202]
        full = client.post("/training/jobs", json={"algorithm": "als", "params": {"factors": 11}})
        assert full.status_code == 409 and full.json()["job_id"] == first.json()["job_id"]
        started = [first, queued, *more]
        unfinished = repo.unfinished_jobs(_state(client).engine)
        assert {job["job_id"] for job in unfinished} == {job.json()["job_id"] for job in started}
    finally:
        release.set()
    for job in started:
        assert wait_for_job(client, job.json()["job_id"])["status"] == "failed"
    assert client.post("/training/jobs", json={"algorithm": "popularity"}).status_code == 202


def test_sync_loop_survives_a_failing_step(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    state = _state(client)

    def broken(engine: Any) -> int:
        raise RuntimeError("the catalogue is unreachable")

    monkeypatch.setattr(state.catalogue, "refresh", broken)
    caplog.set_level(logging.INFO, logger="rekko.service.state")
    for _ in range(5):
        state.sync()
    failures = [r for r in caplog.records if "sync step catalogue failed" in r.getMessage()]
    assert len(failures) == 1
    metrics = client.get("/metrics").text
    [line] = [row for row in metrics.splitlines() if row.startswith("rekko_sync_failures_total")]
    assert 'step="catalogue"' in line and float(line.split()[-1]) >= 5
    assert client.post("/events", json={"events": [_event()]}).status_code == 200
    monkeypatch.undo()
    state.sync()
    assert "sync step catalogue works again" in caplog.text


# -- 5: activating a version that cannot serve -----------------------------------------------
def _broken_copy(client: TestClient, damage: str) -> str:
    """A copy of the active version with its state damaged; returns its name."""
    registry = _state(client).registry
    active = registry.active
    name = f"v0099-broken-{damage}"
    folder = registry.path(name)
    shutil.copytree(registry.path(active), folder)
    info = json.loads((folder / "version.json").read_text())
    (folder / "version.json").write_text(json.dumps({**info, "version": name}))
    state_file = folder / "model" / "state.npz"
    if damage == "bytes":
        state_file.write_bytes(b"not a zip file")
    else:  # arrays that load but do not fit together
        with np.load(state_file, allow_pickle=False) as arrays:
            state = {key: arrays[key] for key in arrays.files}
        state["als__item_factors"] = state["als__item_factors"][:, :3].copy()
        np.savez(state_file, **state)
    return name


@pytest.mark.parametrize("damage", ["bytes", "shape"])
def test_a_version_that_cannot_serve_is_not_activated(settings: ServeSettings, damage: str) -> None:
    with TestClient(create_app(settings)) as client:
        before = client.get("/models/active").json()
        broken = _broken_copy(client, damage)
        response = client.post(f"/models/{broken}/activate")
        field, reason = _problem(response)
        assert field == "path.version" and broken in reason
        assert str(settings.model_dir) not in response.text and "/versions/" not in response.text
        assert client.get("/models/active").json() == before
        split = client.put("/models/split", json={"version": broken, "share": 0.5})
        assert _problem(split)[0] == "body.version"
        assert client.get("/models/active").json() == before
        assert client.get("/ready").json()["model_version"] == before["active"]
        _finite_recommendations(client)
        assert client.get("/users/nobody/recommendations").status_code == 200
    with TestClient(create_app(settings)) as restarted:  # the next start works
        assert restarted.get("/ready").json()["model_version"] == before["active"]
        _finite_recommendations(restarted)


def test_rollback_to_a_version_that_cannot_serve_keeps_the_active_one(
    settings: ServeSettings,
) -> None:
    with TestClient(create_app(settings)) as client:
        first = _state(client).registry.active
        job = client.post("/training/jobs", json={"algorithm": "popularity"}).json()["job_id"]
        assert wait_for_job(client, job)["status"] == "succeeded"
        second = client.get("/models").json()[-1]["version"]
        assert client.post(f"/models/{second}/activate").json()["active"] == second
    with TestClient(create_app(settings)) as client:  # the first version is not loaded now
        registry = _state(client).registry
        (registry.path(first) / "model" / "state.npz").write_bytes(b"damaged")
        response = client.post("/models/rollback")
        assert _problem(response)[0] == "request" and first in response.text
        assert client.get("/models/active").json()["active"] == second
        assert client.get("/ready").json()["model_version"] == second


def test_a_trained_version_that_cannot_serve_is_not_activated(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = client.get("/models/active").json()

    def failing(model: Any) -> None:
        raise IndexError("index 7 is out of bounds for axis 0 with size 3")

    monkeypatch.setattr(serving, "probe", failing)
    job = client.post("/training/jobs", json={}).json()["job_id"]  # passes the quality gate
    finished = wait_for_job(client, job)
    assert finished["status"] == "failed" and not finished["activated"]
    assert "cannot be served: IndexError" in finished["error"]
    assert client.get("/models/active").json() == before


def test_a_pointer_to_a_version_that_cannot_serve_keeps_the_loaded_one(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    state = _state(client)
    serving_now = state.pool.active.version
    broken = _broken_copy(client, "shape")
    state.registry.activate(broken)  # as another process might have done
    for _ in range(3):
        state.sync()
    assert state.pool.active.version == serving_now
    assert client.get("/ready").json()["model_version"] == serving_now
    _finite_recommendations(client)
    tracebacks = [r for r in caplog.records if "cannot be served" in r.getMessage()]
    assert len(tracebacks) == 1
