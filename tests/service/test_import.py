"""Importing a team's own data: ``import_data``, ``rekko serve --interactions``, ``rekko import``
and ``--follow`` (followed tables on PostgreSQL and MariaDB are marked ``db``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from rekko.config import DataSpec
from rekko.errors import DataError
from rekko.models.registry import create_model
from rekko.service import create_app
from rekko.service.settings import SettingsError, load_settings
from rekko.service.testing import settings_for, temporary_database
from rekko.store import repository as repo
from rekko.store.db import create_db_engine, upgrade_database
from rekko.store.imports import Follower, import_data, import_state, list_imports, source_key
from rekko.store.schema import events as events_table

WEIGHTS = "view=1,addtocart=3,transaction=5"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'service.db'}", sqlite_synchronous="NORMAL")
    upgrade_database(engine)
    yield engine
    engine.dispose()


def _shop(path: Path, rows: int = 300, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "visitor": [f"v{u}" for u in rng.integers(0, 40, rows)],
            "product": [f"p{i}" for i in rng.integers(0, 25, rows)],
            "action": rng.choice(["view", "addtocart", "transaction"], rows, p=[0.7, 0.2, 0.1]),
            "ts": 1_700_000_000 + np.arange(rows) * 60,
        }
    )
    frame.to_csv(path, index=False)
    return frame


def _spec(path: Path, **extra: str) -> DataSpec:
    return DataSpec(
        interactions=str(path),
        user_col="visitor",
        item_col="product",
        event_col="action",
        timestamp_col="ts",
        **extra,
    )


def _stored(engine: sa.Engine) -> pd.DataFrame:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(
                events_table.c.user_id,
                events_table.c.item_id,
                events_table.c.event_type,
                events_table.c.value,
                events_table.c.occurred_at,
            ).order_by(events_table.c.id)
        ).all()
    return pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "value", "occurred_at"])


def test_import_stores_each_row_once_and_a_grown_file_only_its_new_rows(
    engine: sa.Engine, tmp_path: Path
) -> None:
    path = tmp_path / "events.csv"
    frame = _shop(path)
    first = import_data(engine, _spec(path), event_weights=WEIGHTS)
    assert (first.rows, first.stored, first.already) == (300, 300, 0)
    stored = _stored(engine)
    assert stored["user_id"].tolist() == frame["visitor"].tolist()  # in the file's order
    assert stored["event_type"].tolist() == frame["action"].tolist()
    assert stored["occurred_at"].tolist() == frame["ts"].astype(float).tolist()
    assert set(stored["value"]) == {1.0}

    again = import_data(engine, _spec(path), event_weights=WEIGHTS)
    assert again.unchanged and again.stored == 0  # the file did not change: not even read
    forced = import_data(engine, _spec(path), event_weights=WEIGHTS, force=True)
    assert (forced.stored, forced.already) == (0, 300)

    # The log grows: the same rows plus 50 new ones, one of them a repeat of an old row.
    grown = pd.concat([frame, _shop(tmp_path / "more.csv", rows=49, seed=8), frame.iloc[[0]]])
    grown.to_csv(path, index=False)
    later = import_data(engine, _spec(path), event_weights=WEIGHTS)
    assert (later.rows, later.stored, later.already) == (350, 50, 300)
    assert repo.count_events(engine) == 350
    state = import_state(engine, source_key(_spec(path)))
    assert state is not None and (state.rows, state.stored) == (350, 350)
    assert [row["rows"] for row in list_imports(engine)] == [350]


def test_a_bad_row_imports_nothing_and_is_named(engine: sa.Engine, tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    frame = _shop(path)
    items = tmp_path / "items.csv"
    pd.DataFrame({"product_id": ["p1", "p2"], "price": [3.5, 4.0]}).to_csv(items, index=False)
    frame["ts"] = frame["ts"].astype(object)
    frame.loc[120, "ts"] = "yesterday-ish"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"row 122.*ts|ts.*row 122"):
        import_data(
            engine, _spec(path, items=str(items), item_id_col="product_id"), event_weights=WEIGHTS
        )
    frame.loc[120, "ts"] = 1_700_000_000
    frame.loc[7, "action"] = "wishlist"  # no weight for it
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match="wishlist"):
        import_data(engine, _spec(path), event_weights=WEIGHTS)
    assert repo.count_events(engine) == 0
    assert repo.get_item(engine, "p1") is None
    assert list_imports(engine) == []


def test_features_are_imported_with_the_events(engine: sa.Engine, tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    _shop(path)
    items = tmp_path / "items.csv"
    pd.DataFrame(
        {"product_id": ["p1", "p2"], "price": [3.5, 4.0], "tags": ["red|big", "blue"]}
    ).to_csv(items, index=False)
    users = tmp_path / "users.csv"
    pd.DataFrame({"visitor": ["v1"], "age": [41]}).to_csv(users, index=False)
    spec = _spec(
        path, items=str(items), item_id_col="product_id", item_kinds="tags=multi", users=str(users)
    )
    report = import_data(engine, spec, event_weights=WEIGHTS)
    assert (report.items, report.users) == (2, 1)
    item = repo.get_item(engine, "p1")
    assert item is not None and item.features == {"price": 3.5, "tags": ["red", "big"]}
    assert repo.get_user(engine, "v1") == {"age": 41}


def test_ratings_are_served_as_rekko_train_fits_them(
    tmp_path: Path, datasets_dir: Path, same_rankings: Callable[..., None]
) -> None:
    """The service trained on an imported ratings file serves the lists that the library's
    model fitted on that file gives (a sample of MovieLens-100K)."""
    ratings = pd.read_csv(
        datasets_dir / "ml-100k" / "u.data",
        sep="\t",
        names=["user_id", "item_id", "rating", "timestamp"],
    )
    sample = ratings[ratings["user_id"] <= 150]
    path = tmp_path / "ratings.csv"
    sample.to_csv(path, index=False)
    spec = DataSpec(interactions=str(path))
    library = create_model("ease").fit(spec.load())
    users = sorted(sample["user_id"].astype(str).unique().tolist(), key=int)
    expected = library.recommend(users, k=10)
    settings = settings_for(tmp_path / "svc", data=spec, model="ease")
    with TestClient(create_app(settings)) as client:
        state = client.app.state.service  # type: ignore[attr-defined]
        assert client.get("/ready").status_code == 200
        assert repo.count_events(state.engine) == len(sample)
        assert set(_stored(state.engine)["event_type"]) == {"rating"}
        served = state.pool.active
        assert served is not None and served.model.metadata_["explicit_data"] is True
        rows = []
        for user in users:
            body = client.get(f"/users/{user}/recommendations", params={"k": 10}).json()
            rows += [
                {"user_id": user, "item_id": i["item_id"], "rank": i["rank"], "score": i["score"]}
                for i in body["items"]
            ]
    expected = expected.astype({"user_id": str, "item_id": str})
    same_rankings(pd.DataFrame(rows), expected)


def test_a_restart_imports_nothing_twice_and_a_changed_file_retrains(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    frame = _shop(path)
    settings = settings_for(
        tmp_path / "svc", data=_spec(path), model="popularity", event_weights=WEIGHTS
    )
    with TestClient(create_app(settings)) as client:
        state = client.app.state.service  # type: ignore[attr-defined]
        first = client.get("/ready").json()["model_version"]
        assert first is not None
        assert repo.count_events(state.engine) == 300
        assert repo.get_item(state.engine, "x-demo") is None
        assert len(repo.list_jobs(state.engine)) == 1
    with TestClient(create_app(settings)) as client:
        state = client.app.state.service  # type: ignore[attr-defined]
        assert client.get("/ready").json()["model_version"] == first
        assert repo.count_events(state.engine) == 300
        assert len(repo.list_jobs(state.engine)) == 1  # nothing new: no training
    pd.concat([frame, _shop(tmp_path / "more.csv", rows=20, seed=3)]).to_csv(path, index=False)
    with TestClient(create_app(settings)) as client:
        state = client.app.state.service  # type: ignore[attr-defined]
        assert repo.count_events(state.engine) == 320
        jobs = repo.list_jobs(state.engine)
        assert len(jobs) == 2 and jobs[0]["trigger"] == "import"
        assert client.get("/ready").json()["model_version"] != first


def test_no_demo_is_loaded_when_data_is_given(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    _shop(path)
    settings = settings_for(
        tmp_path / "svc", data=_spec(path), model="popularity", event_weights=WEIGHTS
    )
    with TestClient(create_app(settings)) as client:
        state = client.app.state.service  # type: ignore[attr-defined]
        assert client.get("/ready").status_code == 200
        users = {row.user_id for row in repo.events_after(state.engine, 0)}
        assert repo.items_changed_since(state.engine, 0) == []  # no demo catalogue
    assert users and all(user.startswith("v") for user in users)


def test_follow_needs_a_database_table(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="follow needs"):
        load_settings(flags={"follow": "id", "data": {"interactions": "events.csv"}}, environ={})
    with pytest.raises(SettingsError, match="follow needs"):
        load_settings(flags={"follow": "id"}, environ={})
    spec = DataSpec(interactions="sqlite:///x.db", table="events")
    assert load_settings(flags={"follow": "id", "data": spec}, environ={}).follow == "id"


def _run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rekko", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )


def test_rekko_import_command(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    frame = _shop(path)
    url = f"sqlite:///{tmp_path / 'svc.db'}"
    flags = ["--user-col", "visitor", "--item-col", "product", "--event-col", "action"]
    flags += ["--timestamp-col", "ts", "--event-weights", WEIGHTS, "--database-url", url]
    done = _run_cli("import", "-i", str(path), *flags, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "300 rows, 300 new events" in done.stdout
    again = _run_cli("import", "-i", str(path), *flags, cwd=tmp_path)
    assert again.returncode == 0 and "unchanged" in again.stdout
    frame.loc[41, "visitor"] = ""
    frame.to_csv(path, index=False)
    bad = _run_cli("import", "-i", str(path), *flags, cwd=tmp_path)
    assert bad.returncode == 1
    assert "row 43" in bad.stderr and "Traceback" not in bad.stderr
    engine = create_db_engine(url)
    try:
        assert repo.count_events(engine) == 300
    finally:
        engine.dispose()


# -- real servers --------------------------------------------------------------------------
@pytest.fixture(params=["postgresql", "mariadb"])
def server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    try:
        with temporary_database(request.param) as url:
            yield url
    except OperationalError as error:
        if os.environ.get("CI"):  # CI has both servers: a missing one is a failure there
            raise
        pytest.skip(f"{request.param} server not reachable: {error.orig}")


@pytest.mark.db
def test_bulk_import_on_a_server(server_url: str, tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    _shop(path, rows=2_000)
    engine = create_db_engine(server_url)
    try:
        upgrade_database(engine)
        first = import_data(engine, _spec(path), event_weights=WEIGHTS)
        assert first.stored == 2_000
        again = import_data(engine, _spec(path), event_weights=WEIGHTS, force=True)
        assert (again.stored, again.already) == (0, 2_000)
        assert repo.count_events(engine) == 2_000
        assert _stored(engine)["occurred_at"].is_monotonic_increasing  # in the file's order
    finally:
        engine.dispose()


def _app_table(url: str) -> sa.Table:
    table = sa.Table(
        "orders",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("customer", sa.String(64), nullable=False),
        sa.Column("product", sa.String(64), nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
    )
    app_engine = sa.create_engine(url)
    table.metadata.create_all(app_engine)
    rng = np.random.default_rng(5)
    with app_engine.begin() as connection:
        connection.execute(
            sa.insert(table),
            [
                {
                    "customer": f"c{int(c)}",
                    "product": f"p{int(p)}",
                    "created": pd.Timestamp("2026-11-01") + pd.Timedelta(minutes=i),
                }
                for i, (c, p) in enumerate(
                    zip(rng.integers(0, 30, 400), rng.integers(0, 20, 400), strict=True)
                )
            ],
        )
    app_engine.dispose()
    return table


def _top(client: TestClient, user: str) -> list[str]:
    body = client.get(f"/users/{user}/recommendations", params={"k": 5}).json()
    return [item["item_id"] for item in body["items"]]


@pytest.mark.db
def test_a_followed_table_changes_recommendations_within_seconds(
    server_url: str, tmp_path: Path
) -> None:
    table = _app_table(server_url)
    spec = DataSpec(
        interactions=server_url,
        table="orders",
        user_col="customer",
        item_col="product",
        timestamp_col="created",
    )
    settings = settings_for(tmp_path / "svc", data=spec, follow="id", model="ease")
    app_engine = sa.create_engine(server_url)
    try:
        with TestClient(create_app(settings)) as client:
            state = client.app.state.service  # type: ignore[attr-defined]
            assert repo.count_events(state.engine) == 400
            before = _top(client, "c3")
            with app_engine.begin() as connection:  # the application writes rows
                connection.execute(
                    sa.insert(table),
                    [
                        {"customer": "c3", "product": item, "created": pd.Timestamp("2026-12-01")}
                        for item in before[:2]
                    ],
                )
            deadline = time.monotonic() + 5.0
            while (after := _top(client, "c3")) == before and time.monotonic() < deadline:
                time.sleep(0.1)
            assert set(before[:2]).isdisjoint(after)  # seen now: no longer recommended
            assert repo.count_events(state.engine) == 402
        with app_engine.begin() as connection:  # written while the service is down
            connection.execute(
                sa.insert(table),
                [{"customer": "c9", "product": "p1", "created": pd.Timestamp("2026-12-02")}],
            )
        with TestClient(create_app(settings)) as client:
            state = client.app.state.service  # type: ignore[attr-defined]
            deadline = time.monotonic() + 5.0
            while repo.count_events(state.engine) < 403 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(3 * settings.sync_interval_s)
            assert repo.count_events(state.engine) == 403  # none lost, none doubled
    finally:
        app_engine.dispose()


@pytest.mark.db
def test_follower_takes_rows_exactly_once(server_url: str, tmp_path: Path) -> None:
    table = _app_table(server_url)
    spec = DataSpec(
        interactions=server_url, table="orders", user_col="customer", item_col="product"
    )
    engine = create_db_engine(f"sqlite:///{tmp_path / 'svc.db'}")
    upgrade_database(engine)
    follower = Follower(spec, "id", batch=150)
    try:
        from rekko.data.dataset import EventWeights

        weights = EventWeights.parse("*=1")
        taken = [follower.poll(engine, weights).stored for _ in range(4)]
        assert taken == [150, 149, 101, 0]  # each poll reads the last row taken again
        restarted = Follower(spec, "id", batch=150)
        assert restarted.poll(engine, weights).stored == 0
        restarted.close()
        assert repo.count_events(engine) == 400
        with pytest.raises(DataError, match="not in table"):
            Follower(spec, "nosuch").poll(engine, weights)
    finally:
        follower.close()
        engine.dispose()
        del table


# -- models trained elsewhere --------------------------------------------------------------
def test_serve_a_model_trained_elsewhere(tmp_path: Path) -> None:
    """``model_path``: the folder ``rekko train`` wrote is served as a version (once), after
    its items are checked against the catalogue and its configuration passed the gate."""
    path = tmp_path / "events.csv"
    _shop(path)
    trained = create_model("item-knn").fit(_spec(path, event_weights=WEIGHTS).load())
    folder = trained.save(tmp_path / "trained")
    settings = settings_for(
        tmp_path / "svc",
        data=_spec(path),
        model="popularity",
        event_weights=WEIGHTS,
        model_path=folder,
    )
    with TestClient(create_app(settings)) as client:
        state = client.app.state.service  # type: ignore[attr-defined]
        active = client.get("/ready").json()["model_version"]
        info = state.registry.info(active)
        assert info.algorithm == "item-knn" and info.pushed_from == str(folder.resolve())
        jobs = repo.list_jobs(state.engine)
        assert [job["trigger"] for job in jobs] == ["push"]  # no popularity model trained
        served = client.get("/users/v3/recommendations", params={"k": 5}).json()["items"]
        expected = trained.recommend(["v3"], k=5)
        assert [item["item_id"] for item in served] == expected["item_id"].tolist()
    with TestClient(create_app(settings)) as client:  # a restart registers nothing again
        state = client.app.state.service  # type: ignore[attr-defined]
        assert len(state.registry.list()) == 1


def test_push_endpoint_checks_the_folder_and_the_catalogue(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    _shop(path)
    settings = settings_for(
        tmp_path / "svc", data=_spec(path), model="popularity", event_weights=WEIGHTS
    )
    other = tmp_path / "other.csv"
    frame = _shop(other, seed=11)
    frame["product"] = "q" + frame["product"]  # items the service has never heard of
    frame.to_csv(other, index=False)
    foreign = create_model("popularity").fit(_spec(other).load()).save(tmp_path / "foreign")
    mine = create_model("item-knn").fit(_spec(path).load()).save(tmp_path / "mine")
    with TestClient(create_app(settings)) as client:
        from rekko.service.testing import wait_for_job

        assert client.post("/models/push", json={"path": "relative/folder"}).status_code == 422
        missing = client.post("/models/push", json={"path": str(tmp_path / "nothing")})
        assert missing.status_code == 422 and "not a model folder" in missing.text
        started = client.post("/models/push", json={"path": str(foreign)})
        assert started.status_code == 202
        failed = wait_for_job(client, started.json()["job_id"])
        assert failed["status"] == "failed" and "not in the service's catalogue" in failed["error"]
        job = wait_for_job(
            client, client.post("/models/push", json={"path": str(mine)}).json()["job_id"]
        )
        assert job["status"] == "succeeded" and job["trigger"] == "push"
        assert "ndcg@10" in job["reason"]  # gated against the active version's configuration
        version = client.get(f"/models/{job['version']}").json()
        assert version["algorithm"] == "item-knn"


def test_a_model_path_that_does_not_fit_the_catalogue_stops_the_start(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    _shop(path)
    other = tmp_path / "other.csv"
    frame = _shop(other, seed=11)
    frame["product"] = "q" + frame["product"]
    frame.to_csv(other, index=False)
    foreign = create_model("popularity").fit(_spec(other).load()).save(tmp_path / "foreign")
    settings = settings_for(
        tmp_path / "svc",
        data=_spec(path),
        model="popularity",
        event_weights=WEIGHTS,
        model_path=foreign,
    )
    with (
        pytest.raises(DataError, match="not in the service's catalogue"),
        TestClient(create_app(settings)),
    ):
        pass
