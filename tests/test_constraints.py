"""Knowledge-based filters: their semantics, their parsing, and that models obey them.

The model properties are checked with Hypothesis over random constraints: every returned item
satisfies them (recomputed here from the feature table, not with the constraint's own mask) and
a user gets ``min(k, qualifying unseen items)`` items.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rekko.constraints import (
    AllOf,
    Equals,
    OneOf,
    Range,
    Within,
    distances_km,
    parse_constraints,
)
from rekko.data.dataset import Dataset, FeatureTable
from rekko.data.demo import CATEGORIES
from rekko.data.idmap import IdMap
from rekko.errors import DataError
from rekko.models import Recommender, create_model

FAST = settings(max_examples=40, deadline=None)
BERLIN = (52.52, 13.40)
PARIS = (48.86, 2.35)
T, F = True, False


def _table() -> FeatureTable:
    frame = pd.DataFrame(
        {
            "item_id": ["a", "b", "c", "d", "e"],
            "style": ["Anime", "anime ", "vintage", None, "3D"],
            "tags": ["cute|cat", "", "cat", "dog|Cute", "dog"],
            "price": [10.0, 30.0, 30.5, None, 5.0],
            "lat": [BERLIN[0], PARIS[0], BERLIN[0] + 0.01, None, -33.87],
            "lon": [BERLIN[1], PARIS[1], BERLIN[1], None, 151.21],
        }
    )
    return FeatureTable.build(
        frame,
        "item_id",
        IdMap.from_values(frame["item_id"]),
        {
            "style": "categorical",
            "tags": "multi",
            "price": "numeric",
            "lat": "latitude",
            "lon": "longitude",
        },
    )


# -- semantics ---------------------------------------------------------------------------------
def test_range_is_inclusive_and_missing_values_never_qualify() -> None:
    table = _table()
    assert Range("price", low=10, high=30).mask(table).tolist() == [T, T, F, F, F]
    assert Range("price", high=30).mask(table).tolist() == [T, T, F, F, T]
    assert Range("price", low=30.5).mask(table).tolist() == [F, F, T, F, F]


def test_one_of_ignores_case_and_spaces_and_overlaps_tag_lists() -> None:
    table = _table()
    assert OneOf("style", ("ANIME",)).mask(table).tolist() == [T, T, F, F, F]
    assert Equals("style", "3d").mask(table).tolist() == [F, F, F, F, T]
    assert OneOf("tags", ("cute", "nothing")).mask(table).tolist() == [T, F, F, T, F]
    assert OneOf("price", (30, "5")).mask(table).tolist() == [F, T, F, F, T]


def test_within_uses_great_circle_distance() -> None:
    table = _table()
    distance = distances_km(table, *BERLIN)
    assert distance[0] == pytest.approx(0.0, abs=1e-6)
    assert distance[1] == pytest.approx(878, rel=0.01)  # Berlin - Paris
    assert distance[2] == pytest.approx(1.11, rel=0.01)  # 0.01 degree of latitude
    assert math.isnan(distance[3])
    assert Within(*BERLIN, km=2).mask(table).tolist() == [T, F, T, F, F]
    assert Within(*BERLIN, km=900).mask(table).tolist() == [T, T, T, F, F]


def test_all_of_is_the_intersection() -> None:
    table = _table()
    both = AllOf((Equals("style", "anime"), Range("price", high=20)))
    assert both.mask(table).tolist() == [T, F, F, F, F]


def test_parse_constraints_builds_each_form() -> None:
    parsed = parse_constraints(
        {
            "style": "anime",
            "tags": ["cat", "dog"],
            "price": {"max": 30},
            "near": {"lat": BERLIN[0], "lon": BERLIN[1], "km": 5},
        }
    )
    assert parsed.constraints == (
        OneOf("style", ("anime",)),
        OneOf("tags", ("cat", "dog")),
        Range("price", None, 30.0),
        Within(BERLIN[0], BERLIN[1], 5.0),
    )
    assert parsed.mask(_table()).tolist() == [T, F, F, F, F]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (["style"], "mapping"),
        ({"near": {"lat": 1, "lon": 2}}, "near"),
        ({"near": {"lat": "x", "lon": 2, "km": 1}}, "numbers"),
        ({"price": {"below": 3}}, "unknown keys"),
        ({"price": {"min": "cheap"}}, "numbers"),
        ({"price": {"min": 5, "max": 1}}, "above max"),
        ({"price": {}}, "min or a max"),
        ({"style": []}, "empty list"),
    ],
)
def test_parse_constraints_errors_say_what_is_wrong(spec: Any, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_constraints(spec)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"near": {"lat": 95, "lon": 2, "km": 1}}, r"lat in \[-90, 90\]"),
        ({"near": {"lat": 1, "lon": 2, "km": -1}}, "km >= 0"),
    ],
)
def test_parse_constraints_reports_out_of_range_places(spec: Any, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_constraints(spec)


def test_masks_name_unknown_or_unsuitable_columns() -> None:
    table = _table()
    with pytest.raises(DataError, match="unknown item feature 'colour'"):
        Equals("colour", "red").mask(table)
    with pytest.raises(DataError, match="not a numeric feature"):
        Range("style", high=3).mask(table)


# -- models obey filters -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def shop(small_demo: Dataset) -> Dataset:
    return small_demo


@pytest.fixture(scope="module")
def models(shop: Dataset) -> dict[str, Recommender]:
    return {name: create_model(name).fit(shop) for name in ("content", "hybrid", "popularity")}


def _expected(frame: pd.DataFrame, spec: dict[str, Any]) -> np.ndarray:
    """Which items satisfy ``spec``, computed independently of the constraint classes."""
    keep = np.ones(len(frame), dtype=bool)
    if "price" in spec:
        low, high = spec["price"].get("min"), spec["price"].get("max")
        price = frame["price"].to_numpy(dtype=float)
        keep &= ~np.isnan(price)
        if low is not None:
            keep &= price >= low
        if high is not None:
            keep &= price <= high
    if "category" in spec:
        keep &= frame["category"].isin(spec["category"]).to_numpy()
    if "tags" in spec:
        keep &= np.array([bool(set(tags) & set(spec["tags"])) for tags in frame["tags"]])
    if "near" in spec:
        near = spec["near"]
        lat, lon = (
            np.radians(frame["latitude"].to_numpy(float)),
            np.radians(frame["longitude"].to_numpy(float)),
        )
        lat0, lon0 = math.radians(near["lat"]), math.radians(near["lon"])
        a = (
            np.sin((lat - lat0) / 2) ** 2
            + math.cos(lat0) * np.cos(lat) * np.sin((lon - lon0) / 2) ** 2
        )
        keep &= 2 * 6371.0088 * np.arcsin(np.sqrt(a)) <= near["km"]
    return keep


TAGS = ("vintage", "modern", "handmade", "novel", "vinyl", "puzzle", "tent", "chess")


def _bounds(low: float | None, high: float | None) -> dict[str, float]:
    if low is not None and high is not None and low > high:
        low, high = high, low
    return {name: v for name, v in (("min", low), ("max", high)) if v is not None}


specs = st.fixed_dictionaries(
    {},
    optional={
        "price": st.builds(
            _bounds, st.one_of(st.none(), st.floats(0, 60)), st.one_of(st.none(), st.floats(0, 120))
        ).filter(bool),
        "category": st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=3, unique=True),
        "tags": st.lists(st.sampled_from(TAGS), min_size=1, max_size=3, unique=True),
        "near": st.fixed_dictionaries(
            {
                "lat": st.sampled_from([52.52, 48.86, 51.51, 41.39]),
                "lon": st.sampled_from([13.40, 2.35, -0.13, 2.17]),
                "km": st.floats(0, 1500),
            }
        ),
    },
)


@FAST
@given(
    spec=specs,
    k=st.integers(1, 30),
    user=st.integers(0, 119),
    name=st.sampled_from(["content", "hybrid", "popularity"]),
)
def test_every_returned_item_satisfies_the_filters(
    models: dict[str, Recommender],
    shop: Dataset,
    spec: dict[str, Any],
    k: int,
    user: int,
    name: str,
) -> None:
    assert shop.item_features is not None
    frame = shop.item_features.frame
    qualifying = _expected(frame, spec)
    user_id = shop.users.external_ids[user]
    seen = np.zeros(shop.n_items, dtype=bool)
    seen[shop.matrix[user].indices] = True
    recs = models[name].recommend([user_id], k=k, filters=parse_constraints(spec))
    returned = shop.items.to_index(recs["item_id"])
    assert qualifying[returned].all()
    assert not seen[returned].any()
    assert len(recs) == min(k, int((qualifying & ~seen).sum()))


@FAST
@given(spec=specs, k=st.integers(1, 90))
def test_content_queries_obey_the_filters(
    models: dict[str, Recommender], shop: Dataset, spec: dict[str, Any], k: int
) -> None:
    assert shop.item_features is not None
    qualifying = _expected(shop.item_features.frame, spec)
    content = models["content"]
    recs = content.recommend_query("vintage novel", k=k, filters=parse_constraints(spec))
    assert qualifying[shop.items.to_index(recs["item_id"])].all()
    assert len(recs) == min(k, int(qualifying.sum()))
