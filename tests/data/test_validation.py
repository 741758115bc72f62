"""The one validation layer: each check runs once, and its errors name source, row and column."""

from __future__ import annotations

import re
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rekko.data import loaders, readers, validation
from rekko.data.dataset import ITEM, Dataset
from rekko.data.idmap import MAX_ID_LENGTH
from rekko.data.readers import ColumnMap, load_dataset, read_features, read_interactions
from rekko.data.validation import Location
from rekko.errors import DataError

CHECKS = (
    "check_ids",
    "check_numbers",
    "check_events",
    "weigh_events",
    "parse_timestamps",
    "check_features",
)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str | None]]:
    """Every call of a check in :mod:`rekko.data.validation`, as (check, source of the rows)."""
    seen: list[tuple[str, str | None]] = []

    def spy(name: str, check: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            where = next((a for a in (*args, *kwargs.values()) if isinstance(a, Location)), None)
            seen.append((name, where.source if where is not None else None))
            return check(*args, **kwargs)

        return counted

    for name in CHECKS:
        monkeypatch.setattr(validation, name, spy(name, getattr(validation, name)))
    return seen


# -- each check once ------------------------------------------------------------------------
def test_load_dataset_checks_each_column_once(
    tmp_path: Path, calls: list[tuple[str, str | None]]
) -> None:
    events = write(
        tmp_path / "events.csv",
        "visitor,sku,event,value,ts\nu1,a,view,1,100\nu2,b,addtocart,2,200\n",
    )
    items = write(tmp_path / "items.csv", "sku,price\na,1.5\nb,2\nc,3\n")
    users = write(tmp_path / "users.csv", "visitor,age\nu1,30\n")
    dataset = load_dataset(
        events,
        items=items,
        users=users,
        columns=ColumnMap(user="visitor", item="sku", timestamp="ts"),
        item_feature_kinds={"price": "numeric"},
        event_weights={"view": 1, "addtocart": 3},
    )
    assert (dataset.n_users, dataset.n_items) == (2, 3)
    assert sorted(calls) == sorted(
        [
            ("check_features", str(items)),
            ("check_ids", str(items)),
            ("check_features", str(users)),
            ("check_ids", str(users)),
            ("check_ids", "events.csv"),  # user ids
            ("check_ids", "events.csv"),  # item ids
            ("check_numbers", "events.csv"),
            ("check_events", "events.csv"),
            ("weigh_events", "events.csv"),
            ("parse_timestamps", "events.csv"),
        ]
    )


def test_readers_alone_check_nothing_but_read_features(
    tmp_path: Path, calls: list[tuple[str, str | None]]
) -> None:
    path = write(tmp_path / "ratings.csv", "user_id,item_id,rating\n1,a,4\n")
    read_interactions(path)
    assert calls == []
    read_features(path, id_column="item_id", target="item", kinds={"rating": "numeric"})
    assert calls == [("check_features", str(path)), ("check_ids", str(path))]


def test_ml100k_loader_checks_each_file_once(
    tmp_path: Path, calls: list[tuple[str, str | None]]
) -> None:
    (tmp_path / "u.data").write_text("1\t1\t5\t881250949\n2\t2\t3\t881250949\n")
    (tmp_path / "u.item").write_text(
        "1|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join(["0"] * 19) + "\n"
        "2|Heat (1995)|01-Jan-1995||http://y|" + "|".join(["0"] * 19) + "\n"
    )
    (tmp_path / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    loaders.load_movielens_100k(tmp_path)
    assert sorted(calls) == [
        ("check_features", str(tmp_path / "u.item")),
        ("check_features", str(tmp_path / "u.user")),
        ("check_ids", str(tmp_path / "u.item")),
        ("check_ids", str(tmp_path / "u.user")),
        ("check_ids", "u.data"),
        ("check_ids", "u.data"),
        ("check_numbers", "u.data"),
        ("parse_timestamps", "u.data"),
    ]


def test_a_readers_error_is_raised_by_the_validator_with_its_location(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings.csv", "userId,movieId,stars\n1,10,4\n1,11,x\n")
    with pytest.raises(DataError) as caught:
        load_dataset(path, columns=ColumnMap(user="userId", item="movieId", rating="stars"))
    assert (caught.value.source, caught.value.row, caught.value.column) == (
        "ratings.csv",
        3,
        "stars",
    )
    raised_in = traceback.extract_tb(caught.value.__traceback__)[-1]
    assert (Path(raised_in.filename).name, raised_in.name) == ("validation.py", "check_numbers")
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    assert not hasattr(readers, "restate_error")


def test_seefud_rows_after_dropped_zero_rows_keep_their_line(tmp_path: Path) -> None:
    (tmp_path / "product3.csv").write_text("Title,Ingredients\nsoto,ayam\n")
    (tmp_path / "user3.csv").write_text(
        "UserID,Title,InteractionType\n1,soto,0\n2,soto,0\n3,soto,-1\n"
    )
    with pytest.raises(DataError) as caught:
        loaders.load_seefud(tmp_path)
    assert (caught.value.source, caught.value.row, caught.value.column) == (
        "user3.csv",
        4,
        "InteractionType",
    )


def test_from_frame_on_a_frame_counts_rows_like_a_file_with_a_header() -> None:
    frame = pd.DataFrame({"user_id": [1, 2], "item_id": ["a", None]}, index=[10, 20])
    with pytest.raises(DataError) as caught:
        Dataset.from_frame(frame)
    assert (caught.value.source, caught.value.row, caught.value.column) == (None, 3, "item_id")
    with pytest.raises(DataError) as caught:
        Dataset.from_frame(frame, source=Location("shop", first_row=1, columns={ITEM: "sku"}))
    assert str(caught.value) == "shop, row 2, column 'sku': missing id"


# -- long ids -------------------------------------------------------------------------------
def test_ids_are_at_most_as_long_as_the_service_accepts(tmp_path: Path) -> None:
    from rekko.store.schema import ID_LENGTH

    assert MAX_ID_LENGTH == ID_LENGTH == 255
    longest, too_long = "x" * MAX_ID_LENGTH, "y" * (MAX_ID_LENGTH + 1)
    fine = write(tmp_path / "fine.csv", f"user_id,item_id\n1,{longest}\n")
    assert load_dataset(fine).items.external_ids.tolist() == [longest]
    path = write(tmp_path / "events.csv", f"visitor,item_id\nu1,a\n{too_long},b\n")
    with pytest.raises(DataError) as caught:
        load_dataset(path, columns=ColumnMap(user="visitor"))
    assert str(caught.value) == (
        "events.csv, row 3, column 'visitor': id of 256 characters is too long (at most 255)"
    )
    items = write(tmp_path / "items.csv", f"item_id,colour\na,red\n{too_long},blue\n")
    with pytest.raises(DataError) as caught:
        load_dataset(fine, items=items)
    assert (caught.value.source, caught.value.row, caught.value.column) == (str(items), 3, ITEM)
    with pytest.raises(DataError, match=r"row 2, column 'user_id': id of 256 characters"):
        Dataset.from_frame(pd.DataFrame({"user_id": [too_long], "item_id": [1]}))


# -- non-scalar ids -------------------------------------------------------------------------
def test_parquet_list_ids_are_one_located_line(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pd.DataFrame({"visitor": [["a"], ["b", "c"]], "item_id": [1, 2]}).to_parquet(path)
    frame = read_interactions(path, columns=ColumnMap(user="visitor"))  # reading does not fail
    assert len(frame) == 2
    with pytest.raises(DataError) as caught:
        load_dataset(path, columns=ColumnMap(user="visitor"))
    message = "events.parquet, row 1, column 'visitor': expected a single id, got ['a']"
    assert str(caught.value) == message
    items = tmp_path / "items.parquet"
    pd.DataFrame({"sku": [[1, 2], [3]], "colour": ["red", "blue"]}).to_parquet(items)
    with pytest.raises(DataError) as caught:
        read_features(items, id_column="sku", target="item")
    assert (caught.value.source, caught.value.row, caught.value.column) == (str(items), 1, "sku")
    assert "\n" not in str(caught.value) and "ambiguous" not in str(caught.value)


def test_other_malformed_ids_are_located() -> None:
    for ids, shown in (([1.0, 2.5], "2.5"), ([True, False], "True"), ([1, {"a": 1}], "{'a': 1}")):
        frame = pd.DataFrame({"user_id": pd.Series(ids), "item_id": [1, 2]})
        with pytest.raises(DataError, match=rf"row \d, column 'user_id': .*{re.escape(shown)}"):
            Dataset.from_frame(frame)


# -- a text file's lines --------------------------------------------------------------------
def test_a_long_row_is_named_by_its_line_in_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "r.csv", '\nuser_id,item_id\n1,"two\nlines"\n\n3,4,5\n')
    for _ in range(2):
        with pytest.raises(DataError) as caught:
            read_interactions(path)
        assert caught.value.row == 6  # blank lines and the lines inside quotes count
        assert str(caught.value).endswith(
            ": expected 2 fields, found 3 (quote values that contain ',')"
        )
        monkeypatch.setattr(readers, "_read_with_arrow", lambda *args, **kwargs: None)


# -- property: a bad value anywhere is named by its row and column ---------------------------
SOURCE_NAMES = {"user_id": "userId", "item_id": "movieId", "rating": "stars", "timestamp": "ts"}
BAD_VALUES: dict[str, list[Any]] = {
    "user_id": [None],
    "item_id": [None, "z" * (MAX_ID_LENGTH + 1)],
    "rating": [-1.0, float("inf"), None],
    "timestamp": ["yesterday", None],
}
MESSAGES = ("missing id", "too long", "finite number", "expected a number", "as a time", "missing")


@given(
    n_rows=st.integers(1, 25),
    data=st.data(),
    form=st.sampled_from(["csv", "parquet", "frame"]),
)
@settings(max_examples=60, deadline=None)
def test_a_bad_value_in_any_row_names_that_row_and_column(
    n_rows: int, data: st.DataObject, form: str
) -> None:
    frame = pd.DataFrame(
        {
            "user_id": pd.Series(np.arange(n_rows) % 4 + 1, dtype=object),
            "item_id": [f"i{n}" for n in range(n_rows)],
            "rating": pd.Series(np.arange(n_rows) % 5 + 1.0, dtype=object),
            "timestamp": [f"2024-01-{n % 28 + 1:02d}T00:00:00" for n in range(n_rows)],
        }
    )
    position = data.draw(st.integers(0, n_rows - 1), label="position")
    column = data.draw(st.sampled_from(list(BAD_VALUES)), label="column")
    frame.loc[position, column] = data.draw(st.sampled_from(BAD_VALUES[column]), label="value")
    if column == "rating" or column == "user_id":
        frame[column] = frame[column].astype(float)
    with pytest.raises(DataError) as caught:
        if form == "frame":
            Dataset.from_frame(frame, source="frame")
        else:
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / f"ratings.{form}"
                renamed = frame.rename(columns=SOURCE_NAMES)
                if form == "csv":
                    renamed.to_csv(path, index=False)
                else:
                    renamed.to_parquet(path)
                load_dataset(path, columns=ColumnMap(**_fields(SOURCE_NAMES)))
    error = caught.value
    first_row = {"csv": 2, "parquet": 1, "frame": 2}[form]
    expected_column = column if form == "frame" else SOURCE_NAMES[column]
    assert (error.row, error.column) == (position + first_row, expected_column)
    assert error.source == ("frame" if form == "frame" else f"ratings.{form}")
    assert any(message in str(error) for message in MESSAGES)


def _fields(names: dict[str, str]) -> dict[str, str]:
    return {canonical.removesuffix("_id"): name for canonical, name in names.items()}
