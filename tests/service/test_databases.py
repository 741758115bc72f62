"""The whole service on real PostgreSQL and MariaDB servers (marked ``db``).

Each backend gets a uniquely named throwaway database for this module, dropped afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from rekko.service import create_app
from rekko.service.testing import settings_for, temporary_database, wait_for_job
from rekko.store import repository as repo

pytestmark = pytest.mark.db


@pytest.fixture(scope="module", params=["postgresql", "mariadb"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    try:
        with temporary_database(request.param) as url:
            yield url
    except OperationalError as error:
        pytest.skip(f"{request.param} server not reachable: {error.orig}")


def test_service_end_to_end(database_url: str, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, database_url=database_url)
    with TestClient(create_app(settings)) as client:
        state = client.app.state.service  # type: ignore[attr-defined]
        assert client.get("/ready").status_code == 200  # demo loaded and trained from the DB
        top = [
            item["item_id"]
            for item in client.get("/users/u0002/recommendations", params={"k": 5}).json()["items"]
        ]
        assert len(top) == 5
        events = [
            {"user_id": "u0002", "item_id": top[0], "event_id": "pg-1"},
            {"user_id": "u0002", "item_id": top[1], "event_id": "pg-2"},
        ]
        before = repo.count_events(state.engine)
        assert client.post("/events", json={"events": events}).json()["stored"] == 2
        assert client.post("/events", json={"events": events}).json()["duplicates"] == 2
        assert repo.count_events(state.engine) == before + 2
        after = client.get("/users/u0002/recommendations", params={"k": 5}).json()
        assert {top[0], top[1]}.isdisjoint(item["item_id"] for item in after["items"])
        client.put(
            "/items", json={"items": [{"item_id": "x1", "features": {"title": "Ünïcode ✓"}}]}
        )
        assert client.get("/items/x1").json()["features"] == {"title": "Ünïcode ✓"}
        job = wait_for_job(client, client.post("/training/jobs", json={}).json()["job_id"])
        assert job["status"] == "succeeded" and job["activated"]
        assert client.get("/ready").json()["model_version"] == job["version"]
        client.get("/online-metrics").raise_for_status()
