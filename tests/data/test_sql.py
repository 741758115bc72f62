"""Reading from SQL databases: SQLite files, and the PostgreSQL / MariaDB servers (marked db)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from rekko.data.readers import ColumnMap, load_dataset, read_features, read_interactions
from rekko.errors import DataError

EVENTS = pd.DataFrame(
    {
        "visitor": ["u1", "u1", "u2", "u3"],
        "sku": [10, 11, 10, 12],
        "kind": ["view", "transaction", "addtocart", "view"],
        "ts": [1_700_000_000, 1_700_000_100, 1_700_000_200, 1_700_000_300],
        "note": ["50%", "a:b", "x", "y"],
    }
)
WEIGHTS = {"view": 1.0, "addtocart": 3.0, "transaction": 5.0}
COLUMNS = ColumnMap(user="visitor", item="sku", event="kind", timestamp="ts")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        EVENTS.to_sql("events", connection, index=False)
        pd.DataFrame({"sku": [10, 11, 12, 13], "colour": ["red", "blue", "red", "green"]}).to_sql(
            "products", connection, index=False
        )
    engine.dispose()
    return url


def test_sqlite_table(sqlite_url: str) -> None:
    frame = read_interactions(sqlite_url, table="events", columns=COLUMNS)
    assert list(frame.columns) == ["user_id", "item_id", "event", "timestamp"]
    assert frame["item_id"].dtype == np.int64
    assert frame["user_id"].tolist() == ["u1", "u1", "u2", "u3"]


def test_sqlite_query_keeps_percent_and_colon(sqlite_url: str) -> None:
    query = "SELECT visitor, sku, kind, ts FROM events WHERE note LIKE '50%' OR note = 'a:b'"
    frame = read_interactions(sqlite_url, query=query, columns=COLUMNS)
    assert frame["item_id"].tolist() == [10, 11]


def test_sqlite_load_dataset_with_items_table(sqlite_url: str) -> None:
    dataset = load_dataset(
        sqlite_url,
        table="events",
        columns=COLUMNS,
        items=sqlite_url,
        items_table="products",
        event_weights=WEIGHTS,
    )
    assert dataset.name == "events"
    assert (dataset.n_users, dataset.n_items, len(dataset)) == (3, 4, 4)
    assert dataset.summary()["items_without_interactions"] == 1  # sku 13: a cold item
    assert dataset.item_features is not None
    assert dataset.item_features.frame["colour"].tolist() == ["red", "blue", "red", "green"]


def test_table_not_found_lists_tables_and_suggests(sqlite_url: str) -> None:
    with pytest.raises(DataError, match=r"table 'event' not found \(tables: events, products\)"):
        read_interactions(sqlite_url, table="event", columns=COLUMNS)
    with pytest.raises(DataError, match=r"did you mean 'events'"):
        read_interactions(sqlite_url, table="event", columns=COLUMNS)


def test_table_names_are_never_pasted_into_sql(sqlite_url: str) -> None:
    with pytest.raises(DataError, match=r"not found"):
        read_interactions(sqlite_url, table="events; DROP TABLE products", columns=COLUMNS)
    assert sa.inspect(sa.create_engine(sqlite_url)).has_table("products")


def test_missing_column_in_a_table_lists_the_columns(sqlite_url: str) -> None:
    with pytest.raises(DataError) as caught:
        read_interactions(sqlite_url, table="events")
    message = str(caught.value)
    assert "table 'events'" in message
    assert "missing column 'user_id' (columns found: visitor, sku, kind, ts, note)" in message
    assert "did you mean 'visitor'" in message


def test_query_errors_are_data_errors(sqlite_url: str) -> None:
    with pytest.raises(DataError, match=r"the database refused the query: no such table: nope"):
        read_interactions(sqlite_url, query="SELECT * FROM nope")
    with pytest.raises(DataError, match=r"query is empty"):
        read_interactions(sqlite_url, query="  ")
    with pytest.raises(DataError, match=r"no rows"):
        read_interactions(sqlite_url, query="SELECT * FROM events WHERE 1 = 0", columns=COLUMNS)


def test_table_and_query_are_exclusive(sqlite_url: str) -> None:
    for table, query in ((None, None), ("events", "SELECT 1")):
        with pytest.raises(DataError, match=r"exactly one of table or query"):
            read_interactions(sqlite_url, table=table, query=query)


def test_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nothing.db"
    with pytest.raises(DataError, match=r"database file not found"):
        read_interactions(f"sqlite:///{path}", table="events")
    assert not path.exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nonsense://", "unknown database kind 'nonsense'"),
        ("mysql+mysqldb://u@127.0.0.1/db", "driver 'MySQLdb' is not installed"),
        ("::not a url::", "only apply to a database URL"),
        ("sqlite://x:y:z", "cannot parse the database URL"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        read_interactions(url, table="events")


def test_connection_errors_hide_the_password() -> None:
    url = "postgresql+psycopg://someone:s3cret-pw@127.0.0.1:1/db?connect_timeout=2"
    with pytest.raises(DataError) as caught:
        read_interactions(url, table="events")
    assert "cannot connect" in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)
    assert "***" in str(caught.value)


# -- real servers ---------------------------------------------------------------------------
SERVERS = {
    "postgresql": (
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
        "postgresql+psycopg://root@127.0.0.1:5432/test",
    ),
    "mariadb": ("mysql+pymysql://root@127.0.0.1:3306/test",),
}


def _reachable(urls: tuple[str, ...]) -> str:
    for url in urls:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        try:
            with engine.connect():
                return url
        except sa.exc.DBAPIError:
            continue
        finally:
            engine.dispose()
    if os.environ.get("CI"):  # CI has both servers: a missing one is a failure there
        pytest.fail(f"no database server answers at {urls[0]}")
    pytest.skip(f"no database server answers at {urls[0]}")


@pytest.fixture(params=sorted(SERVERS))
def server_table(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(URL, name of a fresh events table) on a real server; the table is dropped after."""
    url = _reachable(SERVERS[request.param])
    name = f"rekko_events_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            EVENTS.to_sql(name, connection, index=False)
            pd.DataFrame({"sku": [10, 11, 12, 13], "price": [1.5, 2.0, 3.25, 4.0]}).to_sql(
                f"{name}_items", connection, index=False
            )
        yield url, name
    finally:
        with engine.begin() as connection:
            for table in (name, f"{name}_items"):
                connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


@pytest.mark.db
def test_server_table_and_query(server_table: tuple[str, str]) -> None:
    url, name = server_table
    dataset = load_dataset(
        url,
        table=name,
        columns=COLUMNS,
        items=url,
        items_table=f"{name}_items",
        item_feature_kinds={"price": "numeric"},
        event_weights=WEIGHTS,
    )
    assert (dataset.n_users, dataset.n_items, len(dataset)) == (3, 4, 4)
    assert dataset.has_timestamps
    assert sorted(dataset.to_frame()["value"].tolist()) == [1.0, 1.0, 3.0, 5.0]
    assert dataset.item_features is not None
    assert dataset.item_features.frame["price"].tolist() == [1.5, 2.0, 3.25, 4.0]
    query = f"SELECT visitor, sku FROM {name} WHERE note LIKE '50%' OR note = 'a:b'"
    frame = read_interactions(url, query=query, columns=ColumnMap(user="visitor", item="sku"))
    assert sorted(frame["item_id"].tolist()) == [10, 11]


@pytest.mark.db
def test_server_table_not_found_and_password_hidden(server_table: tuple[str, str]) -> None:
    url, name = server_table
    with pytest.raises(DataError, match=rf"table '{name}x' not found.*did you mean '{name}'"):
        read_interactions(url, table=f"{name}x", columns=COLUMNS)
    with pytest.raises(DataError, match=r"refused the query"):
        read_features(url, query="SELECT * FROM no_such_table_here", id_column="x", target="item")
    wrong = sa.make_url(url).set(password="hunter2-secret", username="nobody_here")
    with pytest.raises(DataError, match=r"cannot connect") as caught:
        read_interactions(wrong.render_as_string(hide_password=False), table=name)
    assert "hunter2-secret" not in str(caught.value)
