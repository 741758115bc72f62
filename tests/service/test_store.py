"""The database layer against SQLite and, marked ``db``, real PostgreSQL and MariaDB servers.

Each backend gets one throwaway database per module (PostgreSQL/MariaDB: a uniquely named
``rekko_test_*`` database, dropped at the end); every test starts from empty tables.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, delete, inspect, text
from sqlalchemy.exc import OperationalError

from rekko.service.testing import temporary_database
from rekko.store import repository as repo
from rekko.store.db import create_db_engine, current_revision, upgrade_database
from rekko.store.schema import metadata
from rekko.store.tail import EventTail


@pytest.fixture(
    scope="module",
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.db),
        pytest.param("mariadb", marks=pytest.mark.db),
    ],
)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('store') / 'rekko.db'}"
        return
    try:
        with temporary_database(request.param) as url:
            yield url
    except OperationalError as error:  # the server is not running on this machine
        if os.environ.get("CI"):  # CI has both servers: a missing one is a failure there
            raise
        pytest.skip(f"{request.param} server not reachable: {error.orig}")


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url, sqlite_synchronous="NORMAL")
    upgrade_database(engine)
    with engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(delete(table))
    yield engine
    engine.dispose()


def _event(
    user: str,
    item: str,
    event_id: str | None = None,
    *,
    event_type: str = "view",
    value: float = 1.0,
    occurred_at: float = 1000.0,
) -> repo.NewEvent:
    return repo.NewEvent(user, item, event_type, value, occurred_at, event_id)


def test_migrations_create_exactly_the_declared_schema(engine: Engine) -> None:
    upgrade_database(engine)  # a second run is a no-op
    assert current_revision(engine) == "0003"
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []
    assert {"items", "users", "events", "impressions", "training_jobs", "leases", "imports"} <= set(
        inspect(engine).get_table_names()
    )


def test_an_initial_schema_with_impressions_upgrades_in_place(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade_database(engine, "0001")
    repo.add_impressions(engine, [repo.Impression("r1", "u1", "i1", 1, "v1", 1000.0)])
    assert "ix_impressions_user_item" in {
        index["name"] for index in inspect(engine).get_indexes("impressions")
    }
    upgrade_database(engine)
    assert current_revision(engine) == "0003"
    assert {index["name"] for index in inspect(engine).get_indexes("impressions")} == {
        "ix_impressions_served_at"
    }
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM impressions")).scalar() == 1
    engine.dispose()


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'sub' / 'x.db'}")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
    engine.dispose()


def test_events_are_idempotent_by_event_id(engine: Engine) -> None:
    first = repo.add_events(
        engine, [_event("u1", "i1", "e1"), _event("u1", "i2", "e2"), _event("u2", "i1")]
    )
    assert (first.stored, first.duplicates) == (3, 0)
    again = repo.add_events(
        engine, [_event("u1", "i1", "e1"), _event("u3", "i3", "e3"), _event("u3", "i3", "e3")]
    )
    assert (again.stored, again.duplicates) == (1, 2)  # stored before, and repeated in batch
    assert repo.count_events(engine) == 4
    rows = repo.events_after(engine, 0)
    assert [r.user_id for r in rows] == ["u1", "u1", "u2", "u3"]
    assert repo.last_event_id(engine) == rows[-1].id
    assert repo.count_events_after(engine, rows[1].id) == 2


def test_catalogue_upsert_hide_delete_and_training_data(engine: Engine) -> None:
    inserted, updated = repo.upsert_items(
        engine,
        [("i1", {"title": "red shoe", "tags": ["a", "b"]}, None), ("i2", {"price": 3.5}, None)],
    )
    assert (inserted, updated) == (2, 0)
    inserted, updated = repo.upsert_items(
        engine, [("i1", {"title": "blue shoe"}, None), ("i3", {}, "hidden")]
    )
    assert (inserted, updated) == (1, 1)
    record = repo.get_item(engine, "i1")
    assert record is not None and record.features == {"title": "blue shoe"}
    assert record.status == "active"
    assert repo.set_item_status(engine, "i2", "deleted")
    assert not repo.set_item_status(engine, "nope", "hidden")
    repo.upsert_users(engine, [("u1", {"age": 30})])
    repo.upsert_users(engine, [("u1", {"age": 31}), ("u2", {"age": 20})])
    assert repo.get_user(engine, "u1") == {"age": 31}
    repo.add_events(engine, [_event("u1", "i1"), _event("u1", "i2"), _event("u2", "i3")])
    data = repo.training_data(engine)
    assert sorted(data.events["item_id"]) == ["i1", "i3"]  # events of deleted items left out
    assert data.items is not None and sorted(data.items["item_id"]) == ["i1", "i3"]
    assert data.users is not None and len(data.users) == 2
    assert data.watermark == repo.last_event_id(engine)
    changed = repo.items_changed_since(engine, 0)
    assert {r.item_id: r.status for r in changed} == {
        "i1": "active",
        "i2": "deleted",
        "i3": "hidden",
    }


def test_online_metrics_count_followed_impressions(engine: Engine) -> None:
    now = time.time()
    repo.add_impressions(
        engine,
        [
            repo.Impression("r1", "u1", "i1", 1, "v1", now - 100),
            repo.Impression("r1", "u1", "i2", 2, "v1", now - 100),
            repo.Impression("r2", "u2", "i1", 1, "v2", now - 100),
        ],
    )
    repo.add_events(
        engine,
        [
            _event("u1", "i1", occurred_at=now - 50),  # follows r1's first item
            _event("u1", "i2", occurred_at=now - 200),  # before the impression: no
            _event("u2", "i1", occurred_at=now - 50, event_type="dislike", value=0.0),
        ],
    )
    rows = {
        r["model_version"]: r for r in repo.online_metrics(engine, since=now - 1000, window_s=3600)
    }
    assert rows["v1"]["impressions"] == 2 and rows["v1"]["followed"] == 1
    assert rows["v1"]["follow_rate"] == pytest.approx(0.5)
    assert rows["v2"]["followed"] == 0  # value 0 is not a positive follow-up
    only_views = repo.online_metrics(
        engine, since=now - 1000, window_s=3600, positive_events=["purchase"]
    )
    assert all(r["followed"] == 0 for r in only_views)


def test_jobs_and_leases(engine: Engine) -> None:
    repo.create_job(engine, "j1", trigger="api", algorithm="popularity", params={"a": 1})
    repo.update_job(engine, "j1", status="succeeded", finished_at=time.time(), metrics={"x": 1.0})
    job = repo.get_job(engine, "j1")
    assert job is not None and job["status"] == "succeeded" and job["params"] == {"a": 1}
    assert repo.last_finished_job(engine) is not None
    assert [j["job_id"] for j in repo.list_jobs(engine)] == ["j1"]
    assert repo.try_acquire_lease(engine, "training", "a", 60)
    assert repo.try_acquire_lease(engine, "training", "a", 60)  # renewal by the holder
    assert not repo.try_acquire_lease(engine, "training", "b", 60)
    repo.release_lease(engine, "training", "a")
    assert repo.try_acquire_lease(engine, "training", "b", 60)
    repo.create_job(engine, "j2", trigger="api", algorithm="popularity", params={})
    assert repo.fail_stale_jobs(engine, older_than=time.time() + 1) == 1


def test_tail_follows_new_events_once(engine: Engine) -> None:
    repo.add_events(engine, [_event("u1", "i1"), _event("u1", "i2")])
    tail = EventTail(0)
    first = tail.fetch(engine)
    assert len(first) == 2
    tail.mark([row.id for row in first])
    assert tail.fetch(engine) == []
    repo.add_events(engine, [_event("u2", "i3")])
    assert [r.user_id for r in tail.fetch(engine)] == ["u2"]


def test_tail_waits_for_gaps_then_skips_them() -> None:
    tail = EventTail(10, settle_s=5.0)
    tail.mark([11, 12, 14], now=0.0)  # 13 may still commit
    assert tail.floor == 12 and tail.pending_ids == 1
    tail.mark([], now=3.0)
    assert tail.floor == 12
    tail.mark([13], now=4.0)  # it did
    assert tail.floor == 14 and tail.pending_ids == 0
    tail.mark([17], now=10.0)  # 15 and 16 never commit
    assert tail.floor == 14
    tail.mark([], now=15.5)
    assert tail.floor == 17
