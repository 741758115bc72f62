"""Dataset.from_frame (aggregation, events, features), IdMap and the train/test splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rekko.data.dataset import Dataset, EventWeights
from rekko.data.idmap import UNKNOWN, IdMap
from rekko.data.splits import LeaveLastOut, RandomSplit, TemporalSplit
from rekko.errors import DataError, UnknownIdError

SHOP_WEIGHTS = EventWeights({"view": 1.0, "addtocart": 3.0, "transaction": 5.0})


def by_pair(dataset: Dataset) -> pd.DataFrame:
    return dataset.to_frame().set_index(["user_id", "item_id"]).sort_index()


# -- aggregation ----------------------------------------------------------------------------
def test_explicit_last_rating_by_timestamp_wins() -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["u", "u", "u", "v", "v"],
            "item_id": ["a", "a", "a", "a", "a"],
            "rating": [5, 1, 3, 2, 4],
            "timestamp": [300, 100, 200, 50, 50],  # (v, a): same time -> the later row wins
        }
    )
    dataset = Dataset.from_frame(frame)
    rows = by_pair(dataset)
    assert dataset.explicit
    assert rows.loc[("u", "a"), "rating"] == 5
    assert rows.loc[("u", "a"), "timestamp"] == 300
    assert rows.loc[("v", "a"), "rating"] == 4
    assert dataset.interactions["count"].tolist() == [3, 2]


def test_explicit_without_timestamps_the_later_row_wins() -> None:
    frame = pd.DataFrame({"user_id": [1, 1], "item_id": [2, 2], "rating": [4.5, 2.0]})
    assert Dataset.from_frame(frame).interactions["value"].tolist() == [2.0]


def test_implicit_sum_with_event_weights_keeps_the_strongest_event() -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["u"] * 4 + ["v"],
            "item_id": ["a"] * 4 + ["a"],
            "event": ["view", "transaction", "addtocart", "view", "view"],
            "timestamp": [1, 4, 2, 3, 9],
        }
    )
    dataset = Dataset.from_frame(frame, event_weights=SHOP_WEIGHTS)
    rows = by_pair(dataset)
    assert not dataset.explicit
    assert rows.loc[("u", "a"), "value"] == 1 + 5 + 3 + 1
    assert rows.loc[("u", "a"), "event"] == "transaction"
    assert rows.loc[("u", "a"), "timestamp"] == 4
    assert rows.loc[("v", "a"), "value"] == 1
    # A plain mapping works as well as EventWeights.
    same = Dataset.from_frame(frame, event_weights={"view": 1, "addtocart": 3, "transaction": 5})
    assert same.interactions["value"].tolist() == dataset.interactions["value"].tolist()


@pytest.mark.parametrize(("aggregate", "expected"), [("sum", 6.0), ("max", 3.0), ("last", 1.0)])
def test_implicit_aggregate_rules(aggregate: str, expected: float) -> None:
    frame = pd.DataFrame(
        {
            "user_id": [1, 1, 1],
            "item_id": [1, 1, 1],
            "value": [3.0, 2.0, 1.0],
            "timestamp": [1, 2, 3],
        }
    )
    dataset = Dataset.from_frame(frame, aggregate=aggregate)  # type: ignore[arg-type]
    assert dataset.interactions["value"].tolist() == [expected]


def test_unknown_event_type_names_its_row() -> None:
    frame = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [1, 2, 3], "event": ["view", "x", "x"]})
    with pytest.raises(DataError, match=r"unknown event type 'x'") as caught:
        Dataset.from_frame(frame, event_weights=SHOP_WEIGHTS, source="events.csv")
    assert (caught.value.source, caught.value.row, caught.value.column) == (
        "events.csv",
        3,
        "event",
    )
    with_default = EventWeights({"view": 1.0}, default=0.5)
    values = Dataset.from_frame(frame, event_weights=with_default).interactions["value"]
    assert sorted(values.tolist()) == [0.5, 0.5, 1.0]


def test_event_weights_parse() -> None:
    assert EventWeights.parse("view=1, addtocart=3,*=0.5") == EventWeights(
        {"view": 1.0, "addtocart": 3.0}, 0.5
    )
    with pytest.raises(DataError, match=r"NAME=NUMBER"):
        EventWeights.parse("view")
    with pytest.raises(DataError, match=r">= 0"):
        EventWeights({"view": -1.0})


def test_empty_frame_and_missing_columns() -> None:
    with pytest.raises(DataError, match=r"missing column 'item_id'"):
        Dataset.from_frame(pd.DataFrame({"user_id": [1]}))
    with pytest.raises(DataError, match=r"no interactions"):
        Dataset.from_frame(pd.DataFrame({"user_id": [], "item_id": []}))


# -- features -------------------------------------------------------------------------------
def test_feature_rows_align_to_indices_and_add_cold_items() -> None:
    frame = pd.DataFrame({"user_id": ["u", "v"], "item_id": ["b", "a"]})
    items = pd.DataFrame(
        {
            "item_id": ["a", "cold", "b"],
            "colour": ["red", "blue", "green"],
            "tags": ["x|y", "", "z"],
            "price": [1.0, 2.0, 3.0],
        }
    )
    users = pd.DataFrame({"user_id": ["v"], "age": [30]})
    dataset = Dataset.from_frame(
        frame, item_features=items, user_features=users, item_feature_kinds={"tags": "multi"}
    )
    assert dataset.items.to_external(np.arange(3)).tolist() == ["b", "a", "cold"]
    features = dataset.item_features
    assert features is not None
    assert features.frame["colour"].tolist() == ["green", "red", "blue"]
    assert features.frame["tags"].tolist() == [("z",), ("x", "y"), ()]
    assert features.frame["price"].tolist() == [3.0, 1.0, 2.0]
    assert dict(features.kinds) == {"colour": "categorical", "tags": "multi", "price": "numeric"}
    assert dataset.summary()["items_without_interactions"] == 1
    assert dataset.user_features is not None
    ages = dataset.user_features.frame["age"].tolist()
    assert np.isnan(ages[0]) and ages[1] == 30.0  # u has no feature row


def test_duplicate_ids_in_a_feature_table() -> None:
    frame = pd.DataFrame({"user_id": [1], "item_id": [1]})
    items = pd.DataFrame({"item_id": [1, 2, 1], "colour": ["r", "g", "b"]})
    with pytest.raises(DataError, match=r"duplicate id") as caught:
        Dataset.from_frame(frame, item_features=items)
    assert (caught.value.row, caught.value.column) == (4, "item_id")


def test_messages_show_values_as_people_write_them() -> None:
    items = pd.DataFrame({"item_id": [1, 2, 1], "colour": ["r", "g", "b"]})
    with pytest.raises(DataError) as caught:
        Dataset.from_frame(pd.DataFrame({"user_id": [1], "item_id": [1]}), item_features=items)
    assert "duplicate id 1 " in str(caught.value)
    ratings = pd.DataFrame({"user_id": [1, 1], "item_id": [1, 2], "rating": [4.0, np.nan]})
    with pytest.raises(DataError) as caught:
        Dataset.from_frame(ratings)
    assert "np." not in str(caught.value)


def test_multi_feature_with_pandas_na() -> None:
    frame = pd.DataFrame({"user_id": [1], "item_id": ["a"]})
    items = pd.DataFrame({"item_id": ["a", "b"], "tags": pd.array(["x|y", None], dtype="string")})
    dataset = Dataset.from_frame(frame, item_features=items, item_feature_kinds={"tags": "multi"})
    assert dataset.item_features is not None
    assert dataset.item_features.frame["tags"].tolist() == [("x", "y"), ()]


def test_categorical_feature_with_pandas_na() -> None:
    frame = pd.DataFrame({"user_id": [1], "item_id": ["a"]})
    items = pd.DataFrame({"item_id": ["a", "b"], "shop": pd.array([7, None], dtype="Int64")})
    dataset = Dataset.from_frame(
        frame, item_features=items, item_feature_kinds={"shop": "categorical"}
    )
    assert dataset.item_features is not None
    shops = dataset.item_features.frame["shop"].tolist()
    assert shops[0] == "7" and pd.isna(shops[1])


def test_passing_id_maps_extends_them() -> None:
    first = Dataset.from_frame(pd.DataFrame({"user_id": ["u"], "item_id": ["a"]}))
    second = Dataset.from_frame(
        pd.DataFrame({"user_id": ["w", "u"], "item_id": ["b", "a"]}),
        users=first.users,
        items=first.items,
    )
    assert second.users.to_external(np.arange(2)).tolist() == ["u", "w"]
    assert second.items.index_of("a") == first.items.index_of("a") == 0


# -- IdMap ----------------------------------------------------------------------------------
def test_idmap_round_trip_and_kinds() -> None:
    ints = IdMap.from_values([30, 10, 30, 20])
    assert ints.kind == "int"
    assert ints.to_external(ints.to_index([10, 20, 30])).tolist() == [10, 20, 30]
    assert ints.to_index([30, 10, 20]).tolist() == [0, 1, 2]  # order of first appearance
    strings = IdMap.from_values(["b", "a", "b"])
    assert strings.kind == "str" and len(strings) == 2


def test_idmap_coerces_between_ints_and_strings() -> None:
    ints = IdMap.from_values([42, 7])
    assert ints.index_of("42") == 0
    assert ints.index_of(" 7 ") == 1
    assert ints.index_of(7.0) == 1
    assert "42" in ints and "x" not in ints and True not in ints
    strings = IdMap.from_values(["42", "x"])
    assert strings.index_of(42) == 0


def test_idmap_unknown_ids_raise_or_are_marked() -> None:
    ids = IdMap.from_values(["a", "b"])
    with pytest.raises(UnknownIdError, match=r"unknown item id\(s\): 'z'"):
        ids.to_index(["a", "z"], what="item")
    assert ids.to_index(["a", "z"], unknown="mark").tolist() == [0, UNKNOWN]


def test_idmap_extend_keeps_old_indices() -> None:
    ids = IdMap.from_values([5, 3])
    grown = ids.extend([3, 9, "11", 9])
    assert grown.to_external(np.arange(4)).tolist() == [5, 3, 9, 11]
    assert ids.extend([5]) is ids
    with pytest.raises(DataError, match=r"not a valid int id"):
        ids.extend(["abc"])


def test_idmap_json_round_trip() -> None:
    for values in ([3, 1, 2], ["x", "y"]):
        ids = IdMap.from_values(values)
        assert IdMap.from_json(ids.to_json()) == ids
    with pytest.raises(DataError, match=r"invalid id map"):
        IdMap.from_json({"kind": "float", "ids": []})


def test_idmap_rejects_missing_and_duplicate_ids() -> None:
    with pytest.raises(DataError, match=r"missing id"):
        IdMap.from_values(["a", None])
    with pytest.raises(DataError, match=r"duplicate id"):
        IdMap([1, 1], "int")


id_values = st.one_of(
    st.lists(st.integers(-(10**12), 10**12), max_size=30),
    st.lists(st.text(min_size=1, max_size=5), max_size=30),
)


@given(old=id_values, new=id_values)
@settings(max_examples=60, deadline=None)
def test_extend_never_renumbers(old: list[object], new: list[object]) -> None:
    ids = IdMap.from_values(old)
    try:
        grown = ids.extend(new)
    except DataError:
        return  # strings that are not integers cannot join an int map
    assert grown.to_external(np.arange(len(ids))).tolist() == ids.external_ids.tolist()
    assert len(grown) == len(ids) + len({grown._coerce(v) for v in new} - set(ids.external_ids))
    assert (grown.to_index(new) >= 0).all()


# -- splits ---------------------------------------------------------------------------------
@st.composite
def datasets(draw: st.DrawFn) -> Dataset:
    n_rows = draw(st.integers(2, 60))
    users = draw(st.lists(st.integers(0, 6), min_size=n_rows, max_size=n_rows))
    items = draw(st.lists(st.integers(0, 12), min_size=n_rows, max_size=n_rows))
    stamps = draw(st.lists(st.integers(0, 50), min_size=n_rows, max_size=n_rows))
    frame = pd.DataFrame({"user_id": users, "item_id": items, "timestamp": stamps})
    return Dataset.from_frame(frame)


def rows_of(dataset: Dataset) -> list[tuple[int, int]]:
    frame = dataset.interactions
    return list(zip(frame["user"], frame["item"], strict=True))


def check_partition(full: Dataset, train: Dataset, test: Dataset) -> None:
    assert not set(rows_of(train)) & set(rows_of(test))
    assert sorted(rows_of(train) + rows_of(test)) == sorted(rows_of(full))
    assert train.users is full.users and test.items is full.items


SPLITS = st.one_of(
    st.builds(
        RandomSplit,
        test_fraction=st.floats(0.05, 0.95),
        seed=st.integers(0, 100),
        min_train=st.integers(0, 3),
    ),
    st.builds(LeaveLastOut, n=st.integers(1, 3)),
    st.builds(TemporalSplit, test_fraction=st.floats(0.05, 0.95)),
)


@given(dataset=datasets(), split=SPLITS)
@settings(max_examples=60, deadline=None)
def test_splits_partition_the_interactions(dataset: Dataset, split: object) -> None:
    try:
        train, test = split.split(dataset)  # type: ignore[attr-defined]
    except DataError:
        return  # too few interactions for this split
    check_partition(dataset, train, test)
    again = split.split(dataset)  # type: ignore[attr-defined]
    assert rows_of(again[1]) == rows_of(test)


@given(dataset=datasets(), fraction=st.floats(0.05, 0.95), min_train=st.integers(0, 3))
@settings(max_examples=40, deadline=None)
def test_random_split_per_user_share(dataset: Dataset, fraction: float, min_train: int) -> None:
    split = RandomSplit(test_fraction=fraction, seed=1, min_train=min_train)
    try:
        _, test = split.split(dataset)
    except DataError:
        return
    per_user = np.bincount(dataset.interactions["user"], minlength=dataset.n_users)
    in_test = np.bincount(test.interactions["user"], minlength=dataset.n_users)
    for n, k in zip(per_user, in_test, strict=True):
        expected = min(max(round(n * fraction), 1), n - min_train) if n > min_train else 0
        assert k == expected


def test_random_split_depends_on_the_seed() -> None:
    frame = pd.DataFrame({"user_id": [0] * 50, "item_id": range(50)})
    dataset = Dataset.from_frame(frame)
    first = RandomSplit(seed=1).split(dataset)[1]
    assert rows_of(RandomSplit(seed=1).split(dataset)[1]) == rows_of(first)
    assert rows_of(RandomSplit(seed=2).split(dataset)[1]) != rows_of(first)


@given(dataset=datasets(), n=st.integers(1, 3))
@settings(max_examples=40, deadline=None)
def test_leave_last_out_takes_the_latest(dataset: Dataset, n: int) -> None:
    try:
        train, test = LeaveLastOut(n=n).split(dataset)
    except DataError:
        return
    train_rows, test_rows = train.interactions, test.interactions
    for user, held_out in test_rows.groupby("user"):
        kept = train_rows[train_rows["user"] == user]
        assert len(held_out) == n
        assert held_out["timestamp"].min() >= kept["timestamp"].max()
    per_user = np.bincount(dataset.interactions["user"], minlength=dataset.n_users)
    assert set(test_rows["user"]) == set(np.flatnonzero(per_user > n))


@given(dataset=datasets(), fraction=st.floats(0.05, 0.95))
@settings(max_examples=40, deadline=None)
def test_temporal_split_cuts_at_one_moment(dataset: Dataset, fraction: float) -> None:
    try:
        train, test = TemporalSplit(test_fraction=fraction).split(dataset)
    except DataError:
        return
    assert train.interactions["timestamp"].max() < test.interactions["timestamp"].min()


def test_leave_last_out_without_timestamps_uses_source_order() -> None:
    # Item "a" is seen first (by user 0), so it gets index 0; user 1's last row is (1, "a").
    frame = pd.DataFrame({"user_id": [0, 1, 1], "item_id": ["a", "b", "a"]})
    _, test = LeaveLastOut().split(Dataset.from_frame(frame))
    assert test.to_frame()[["user_id", "item_id"]].values.tolist() == [[1, "a"]]
