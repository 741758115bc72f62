"""Reading interactions and features from text and Parquet files, and the errors people see."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rekko.data import readers
from rekko.data.readers import (
    ColumnMap,
    load_dataset,
    normalize_ids,
    read_features,
    read_interactions,
    sniff_separator,
)
from rekko.errors import DataError


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


# -- interactions -----------------------------------------------------------------------------
def test_reads_canonical_columns_and_drops_others(tmp_path: Path) -> None:
    path = write(
        tmp_path / "ratings.csv",
        "user_id,item_id,rating,timestamp,comment\n1,10,4,100,good\n2,11,5,200,meh\n",
    )
    frame = read_interactions(path)
    assert list(frame.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert frame["user_id"].dtype == np.int64
    assert frame["item_id"].tolist() == [10, 11]
    assert isinstance(frame.index, pd.RangeIndex)


def test_ids_stay_strings_unless_all_are_integers(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "user_id,item_id\n 7 ,007\n8,x1\n9,010\n")
    frame = read_interactions(path)
    assert frame["user_id"].tolist() == [7, 8, 9]  # spaces around integers do not matter
    assert frame["item_id"].tolist() == ["007", "x1", "010"]  # leading zeros are kept


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (pd.Series(["1", "2"]), [1, 2]),
        (pd.Series([1.0, 2.0]), [1, 2]),
        (pd.Series(["1.0", "2"]), ["1.0", "2"]),
        (pd.Series(["-3", "0"]), [-3, 0]),
        (pd.Series(["99999999999999999999"]), ["99999999999999999999"]),  # beyond int64
        (pd.Series([1, "a"], dtype=object), ["1", "a"]),
    ],
)
def test_normalize_ids(values: pd.Series, expected: list[object]) -> None:
    assert normalize_ids(values).tolist() == expected


@pytest.mark.parametrize(
    ("suffix", "sep"),
    [(".csv", ","), (".csv", ";"), (".txt", "\t"), (".csv", "|"), (".tsv", "\t")],
)
def test_separator_is_sniffed_from_the_header(tmp_path: Path, suffix: str, sep: str) -> None:
    text = sep.join(["user_id", "item_id", "value"]) + "\n" + sep.join(["u1", "i,1", "2"]) + "\n"
    if sep == ",":
        text = 'user_id,item_id,value\nu1,"i,1",2\n'
    frame = read_interactions(write(tmp_path / f"events{suffix}", text))
    assert frame.to_dict("records") == [{"user_id": "u1", "item_id": "i,1", "value": 2}]


def test_sniffing_ignores_separators_inside_quotes() -> None:
    assert sniff_separator('"a;b";"c"') == ";"
    assert sniff_separator('"user,id"\t"item"') == "\t"
    assert sniff_separator("single") == ","


def test_explicit_separator_wins(tmp_path: Path) -> None:
    path = write(tmp_path / "a.txt", "user_id item_id\n1 2\n")
    assert read_interactions(path, sep=" ").to_dict("records") == [{"user_id": 1, "item_id": 2}]


def test_byte_order_mark_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfuser_id,item_id\n1,2\n")
    assert list(read_interactions(path).columns) == ["user_id", "item_id"]


def test_column_map_renames_and_reports_the_source_names(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings.csv", "userId,movieId,stars,ts\n1,10,4,100\n1,11,x,200\n")
    columns = ColumnMap(user="userId", item="movieId", rating="stars", timestamp="ts")
    frame = read_interactions(path, columns=columns)
    assert list(frame.columns) == ["user_id", "item_id", "rating", "timestamp"]
    with pytest.raises(DataError) as caught:
        load_dataset(path, columns=columns)
    assert str(caught.value) == "ratings.csv, row 3, column 'stars': expected a number, got 'x'"
    assert (caught.value.row, caught.value.column) == (3, "stars")


def test_missing_column_names_file_found_columns_and_closest(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings.csv", "userId,movieId,rating\n1,2,3\n")
    with pytest.raises(DataError) as caught:
        read_interactions(path)
    message = str(caught.value)
    assert "ratings.csv" in message
    assert "missing column 'user_id'" in message
    assert "columns found: userId, movieId, rating" in message
    assert "did you mean 'userId'?" in message


def test_misspelt_explicit_column_suggests_the_closest(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "user_id,item_id,timestamp\n1,2,3\n")
    with pytest.raises(DataError, match=r"missing column 'timestmp'.*did you mean 'timestamp'"):
        read_interactions(path, columns=ColumnMap(timestamp="timestmp"))


def test_item_column_suggestion_uses_usual_names(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "user_id,movieId\n1,2\n")
    with pytest.raises(DataError, match=r"did you mean 'movieId'"):
        read_interactions(path)


def test_optional_columns_are_used_only_when_present(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "user_id,item_id,event\n1,2,view\n")
    assert list(read_interactions(path).columns) == ["user_id", "item_id", "event"]
    with pytest.raises(DataError, match=r"missing column 'rating'"):
        read_interactions(path, columns=ColumnMap(rating="rating"))


def test_column_map_parse_and_validation() -> None:
    parsed = ColumnMap.parse("user=userId, item_id=movieId,rating=stars")
    assert parsed == ColumnMap(user="userId", item="movieId", rating="stars")
    with pytest.raises(DataError, match=r"FIELD=COLUMN"):
        ColumnMap.parse("colour=red")
    with pytest.raises(DataError, match=r"more than one field"):
        ColumnMap(user="id", item="id")
    with pytest.raises(DataError, match=r"non-empty"):
        ColumnMap(rating=" ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("\n\n", "empty file"),
        ("user_id,item_id\n", "header but no rows"),
    ],
)
def test_empty_files(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "empty.csv", text)
    with pytest.raises(DataError, match=message) as caught:
        read_interactions(path)
    assert caught.value.source == str(path)


def test_file_not_found_and_unsupported_type(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing\.csv: file not found"):
        read_interactions(tmp_path / "missing.csv")
    with pytest.raises(DataError, match=r"unsupported file type '.xlsx'"):
        read_interactions(write(tmp_path / "book.xlsx", "x"))
    with pytest.raises(DataError, match=r"not a file"):
        read_interactions(tmp_path)


def test_wrong_encoding_suggests_one(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("user_id,item_id\nJosé,1\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"cannot decode the file as utf-8-sig.*latin-1"):
        read_interactions(path)
    assert read_interactions(path, encoding="latin-1")["user_id"].tolist() == ["José"]


def test_a_row_with_too_many_fields_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "user_id,item_id\n1,2\n3,4,5\n")
    with pytest.raises(DataError) as caught:
        read_interactions(path)
    assert caught.value.row == 3
    assert "expected 2 fields, found 3" in str(caught.value)


def test_table_or_query_with_a_file_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "user_id,item_id\n1,2\n")
    with pytest.raises(DataError, match=r"only apply to a database URL"):
        read_interactions(path, table="events")


# -- value errors, reported through load_dataset --------------------------------------------
@pytest.mark.parametrize(
    ("body", "row", "column", "message"),
    [
        ("1,2,4\n1,3,four\n", 3, "rating", "expected a number, got 'four'"),
        ("1,2,4\n1,3,-1\n", 3, "rating", "finite number >= 0"),
        ("1,2,4\n1,3,\n2,2,5\n", 3, "rating", "expected a number"),
        ("1,2,4\n1,3,nan\n", 3, "rating", "expected a number"),
        ("1,2,4\n,3,5\n", 3, "user_id", "missing id"),
    ],
)
def test_bad_values_name_row_and_column(
    tmp_path: Path, body: str, row: int, column: str, message: str
) -> None:
    path = write(tmp_path / "ratings.csv", "user_id,item_id,rating\n" + body)
    with pytest.raises(DataError, match=message) as caught:
        load_dataset(path)
    assert (caught.value.source, caught.value.row, caught.value.column) == (
        "ratings.csv",
        row,
        column,
    )


def test_unparsable_timestamp_names_row(tmp_path: Path) -> None:
    path = write(
        tmp_path / "events.csv",
        "user_id,item_id,timestamp\n1,2,2024-01-02T03:04:05Z\n1,3,yesterday\n",
    )
    with pytest.raises(DataError, match=r"cannot read 'yesterday' as a time") as caught:
        load_dataset(path)
    assert (caught.value.row, caught.value.column) == (3, "timestamp")


def test_unknown_event_type_names_row(tmp_path: Path) -> None:
    path = write(tmp_path / "events.csv", "user_id,item_id,event\n1,2,view\n1,3,like\n")
    with pytest.raises(DataError, match=r"unknown event type 'like'") as caught:
        load_dataset(path, event_weights={"view": 1.0})
    assert (caught.value.row, caught.value.column) == (3, "event")


def test_dates_and_events_load(tmp_path: Path) -> None:
    path = write(
        tmp_path / "events.csv",
        "user_id,item_id,event,timestamp\n"
        "u1,i1,view,2024-01-01T00:00:00Z\nu1,i1,addtocart,2024-01-01T00:01:00Z\n"
        "u2,i1,view,1704067200\n",
    )
    dataset = load_dataset(path, event_weights={"view": 1, "addtocart": 3})
    assert dataset.name == "events"
    assert not dataset.explicit
    frame = dataset.to_frame().sort_values("user_id")
    assert frame["value"].tolist() == [4.0, 1.0]
    assert frame["event"].tolist() == ["addtocart", "view"]
    assert frame["timestamp"].tolist() == [1704067260, 1704067200]


# -- features -------------------------------------------------------------------------------
def test_read_features_renames_the_id_column(tmp_path: Path) -> None:
    path = write(tmp_path / "movies.csv", "movieId,title,zip\n1,Heat,01234\n2,Up,99999\n")
    frame = read_features(path, id_column="movieId", target="item", kinds={"zip": "categorical"})
    assert list(frame.columns) == ["item_id", "title", "zip"]
    assert frame["item_id"].tolist() == [1, 2]
    assert frame["zip"].tolist() == ["01234", "99999"]  # categorical text keeps its zero


def test_duplicate_feature_ids_name_file_row_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "items.csv", "sku,colour\na,red\nb,blue\na,green\n")
    with pytest.raises(DataError, match=r"duplicate id 'a'") as caught:
        read_features(path, id_column="sku", target="item")
    assert (caught.value.source, caught.value.row, caught.value.column) == (str(path), 4, "sku")


def test_missing_feature_ids_and_bad_numbers(tmp_path: Path) -> None:
    path = write(tmp_path / "users.csv", "user_id,age\n1,30\n,40\n")
    with pytest.raises(DataError, match=r"missing id") as caught:
        read_features(path, id_column="user_id", target="user")
    assert caught.value.row == 3
    path = write(tmp_path / "users2.csv", "user_id,age\n1,30\n2,forty\n")
    with pytest.raises(DataError, match=r"expected a number.*'forty'") as caught:
        read_features(path, id_column="user_id", target="user", kinds={"age": "numeric"})
    assert (caught.value.row, caught.value.column) == (3, "age")


def test_feature_errors_name_the_feature_column(tmp_path: Path) -> None:
    path = write(tmp_path / "items.csv", "item_id,colour\n1,red\n")
    with pytest.raises(DataError, match=r"missing column 'color'.*did you mean 'colour'"):
        read_features(path, id_column="item_id", target="item", kinds={"color": "categorical"})
    with pytest.raises(DataError, match=r"missing column 'sku'"):
        read_features(path, id_column="sku", target="item")
    with pytest.raises(DataError, match=r"target must be"):
        read_features(path, id_column="item_id", target="shop")  # type: ignore[arg-type]


def test_load_dataset_with_feature_files_and_cold_items(tmp_path: Path) -> None:
    ratings = write(tmp_path / "ratings.csv", "userId,movieId,rating\n1,10,4\n2,10,5\n2,11,3\n")
    movies = write(
        tmp_path / "movies.csv",
        "movieId,title,genres\n10,Heat (1995),Action|Crime\n11,Up (2009),Animation\n"
        "12,Cold (2020),Drama\n",
    )
    users = write(tmp_path / "users.tsv", "user_id\tage\n1\t30\n2\t40\n")
    dataset = load_dataset(
        ratings,
        items=movies,
        users=users,
        columns=ColumnMap(user="userId", item="movieId"),
        item_feature_kinds={"genres": "multi", "title": "text"},
    )
    assert (dataset.n_users, dataset.n_items, len(dataset)) == (2, 3, 3)
    assert dataset.explicit
    assert dataset.items.to_external(np.arange(3)).tolist() == [10, 11, 12]
    assert dataset.summary()["items_without_interactions"] == 1
    assert dataset.item_features is not None and dataset.user_features is not None
    assert dataset.item_features.frame["genres"].tolist() == [
        ("Action", "Crime"),
        ("Animation",),
        ("Drama",),
    ]
    assert dataset.user_features.frame["age"].tolist() == [30.0, 40.0]


def test_load_dataset_takes_feature_frames(tmp_path: Path) -> None:
    ratings = write(tmp_path / "r.csv", "user_id,item_id\na,x\n")
    items = pd.DataFrame({"item_id": ["x", "y"], "colour": ["red", "blue"]})
    dataset = load_dataset(ratings, items=items)
    assert dataset.n_items == 2


def test_load_dataset_feature_errors_name_the_feature_file(tmp_path: Path) -> None:
    ratings = write(tmp_path / "r.csv", "user_id,item_id\na,x\n")
    items = write(tmp_path / "items.csv", "item_id,price\nx,1\ny,cheap\n")
    with pytest.raises(DataError) as caught:
        load_dataset(ratings, items=items, item_feature_kinds={"price": "numeric"})
    assert (caught.value.source, caught.value.row, caught.value.column) == (str(items), 3, "price")


# -- Parquet --------------------------------------------------------------------------------
def test_parquet_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pd.DataFrame(
        {"visitor": ["a", "b"], "item_id": [1, 2], "value": [1.5, 2.0], "extra": [0, 0]}
    ).to_parquet(path)
    frame = read_interactions(path, columns=ColumnMap(user="visitor"))
    assert frame.to_dict("records") == [
        {"user_id": "a", "item_id": 1, "value": 1.5},
        {"user_id": "b", "item_id": 2, "value": 2.0},
    ]
    with pytest.raises(DataError, match=r"missing column 'user_id'.*did you mean 'visitor'"):
        read_interactions(path)


def test_unreadable_and_empty_parquet(tmp_path: Path) -> None:
    broken = write(tmp_path / "broken.parquet", "not parquet at all")
    with pytest.raises(DataError, match=r"cannot read the file as Parquet") as caught:
        read_interactions(broken)
    assert caught.value.source == str(broken)
    empty = tmp_path / "empty.parquet"
    pd.DataFrame({"user_id": pd.Series([], dtype="int64"), "item_id": []}).to_parquet(empty)
    with pytest.raises(DataError, match=r"no rows"):
        read_interactions(empty)


# -- the fast (pyarrow) and the pandas reader agree ----------------------------------------
TRICKY = {
    "bom.csv": b"\xef\xbb\xbfuser_id,item_id,rating\n1,a,4\n2,b,5\n",
    "blank-lines.csv": b"\nuser_id,item_id,rating\n\n1,a,4\n\n2,b,5\n",
    "quoted.csv": b'user_id,item_id,rating\n1,"a,b",4\n2,"multi\nline",5\n3,"say ""hi""",1\n',
    "markers.csv": b"user_id,item_id,value,note\n1,NA,1,None\n2,b,,null\n3,c,2.5,\n",
    "dates.csv": b"user_id,item_id,timestamp,day\n1,a,2024-01-02T10:00:00,2024-01-02\n"
    b"2,b,2024-01-03T11:00:00,2024-01-03\n",
    "empty-column.tsv": b"user_id\titem_id\tvalue\textra\n1\ta\t1\t\n2\tb\t2\t\n",
    "ints.csv": b"user_id,item_id,flag\n 1 ,007,true\n2,10,false\n",
}


@pytest.mark.parametrize("name", sorted(TRICKY))
def test_fast_reader_agrees_with_pandas(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / name
    path.write_bytes(TRICKY[name])
    fast = read_features(path, id_column="user_id", target="user")
    fast_interactions = read_interactions(path)
    monkeypatch.setattr(readers, "_read_with_arrow", lambda *args, **kwargs: None)
    slow = read_features(path, id_column="user_id", target="user")
    pd.testing.assert_frame_equal(fast, slow, check_dtype=False)
    pd.testing.assert_frame_equal(fast_interactions, read_interactions(path), check_dtype=False)


def test_latin1_files_through_both_readers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("user_id;item_id;title\n1;2;Café Noir\n".encode("latin-1"))
    fast = read_features(path, id_column="item_id", target="item", encoding="latin-1")
    monkeypatch.setattr(readers, "_read_with_arrow", lambda *args, **kwargs: None)
    slow = read_features(path, id_column="item_id", target="item", encoding="latin-1")
    assert fast["title"].tolist() == slow["title"].tolist() == ["Café Noir"]


def test_rows_of_parquet_and_sql_sources_are_counted_from_one(tmp_path: Path) -> None:
    frame = pd.DataFrame({"user_id": [1, 2, 3], "item_id": [10, 11, 12], "rating": [4, -1, 5]})
    frame.to_parquet(tmp_path / "ratings.parquet")
    frame.to_csv(tmp_path / "ratings.csv", index=False)
    with pytest.raises(DataError, match=r"ratings.parquet, row 2, column 'rating'"):
        load_dataset(tmp_path / "ratings.parquet")
    with pytest.raises(DataError, match=r"ratings.csv, row 3, column 'rating'"):
        load_dataset(tmp_path / "ratings.csv")  # the header is line 1
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    frame.to_sql("ratings", url, index=False)
    with pytest.raises(DataError, match=r"row 2, column 'rating'"):
        load_dataset(url, table="ratings")
    items = pd.DataFrame({"item_id": [10, 11, 11], "title": ["a", "b", "c"]})
    items.to_parquet(tmp_path / "items.parquet")
    duplicate = r"items.parquet, row 3, column 'item_id': duplicate id 11 "
    with pytest.raises(DataError, match=duplicate):
        load_dataset(tmp_path / "ratings.csv", items=tmp_path / "items.parquet")
