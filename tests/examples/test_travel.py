"""examples/travel: events in a MariaDB table, multitask trained from it with `rekko train`,
the service trains and recommends, and the distance constraint holds."""

from __future__ import annotations

import importlib.util
import os
import secrets
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import make_url as sa_url

pytestmark = [pytest.mark.slow, pytest.mark.db]

EXAMPLE = Path(__file__).parents[2] / "examples" / "travel" / "travel.py"
MARIADB = "mysql+pymysql://root@127.0.0.1:3306/test"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("travel_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pytest.importorskip("tensorflow")
    pytest.importorskip("pymysql")
    sa = pytest.importorskip("sqlalchemy")
    engine = sa.create_engine(MARIADB)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("select 1"))
    except Exception as error:
        if os.environ.get("CI"):  # CI has the server: a missing one is a failure there
            raise
        pytest.skip(f"no MariaDB at {MARIADB}: {error}")
    table = f"travel_test_{secrets.token_hex(4)}"
    out = tmp_path_factory.mktemp("travel")
    try:
        result = _load().main(["--out", str(out), "--database", MARIADB, "--table", table])
        with engine.connect() as connection:
            left = sa.inspect(connection).has_table(table)
            databases = set(sa.inspect(connection).get_schema_names())
        result["table_left"] = left
        result["databases_left"] = databases
        return result
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


def test_the_table_is_dropped(summary: dict[str, Any]) -> None:
    assert summary["table_left"] is False


def test_multitask_heads(summary: dict[str, Any]) -> None:
    heads = summary["heads"]
    assert len(heads) == 5
    assert set(summary["seen"]).isdisjoint(row["item_id"] for row in heads)
    for row in heads:
        assert 0.0 < row["like"] < 1.0 and 0.0 < row["add"] < 1.0
    # the like head ranks liked places at least as high as only-viewed ones, on average
    assert summary["like_on_liked"] >= summary["like_on_not_liked"] - 0.01


def test_service_trains_and_recommends_near(summary: dict[str, Any]) -> None:
    http = summary["http"]
    # The service ran on its own MariaDB database, dropped afterwards.
    served_from = sa_url(http["database"])
    assert served_from.get_backend_name() == "mysql", http["database"]
    assert served_from.database not in summary["databases_left"]
    assert http["job"]["status"] == "succeeded" and http["job"]["algorithm"] == "multitask"
    plain, near = http["plain"]["items"], http["near"]["items"]
    assert len(plain) == 5 and len(near) == 5
    assert all(item["km"] <= 10.0 for item in near)
    assert any(item["km"] > 10.0 for item in plain)  # the constraint did something
    assert {item["fields"]["city"] for item in near} == {"Bandung"}
