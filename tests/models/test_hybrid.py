"""Ensembles: score normalisation and blending (Hypothesis), the hybrid model, boosts, and the
fallback chain for users with little or no history."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rekko.boosts import Boost, match_strength, parse_boosts
from rekko.constraints import AllOf, Equals, Range, Within
from rekko.data.dataset import Dataset
from rekko.errors import DataError, ModelError
from rekko.index.topk import top_k
from rekko.models import create_model, load_model
from rekko.models.hybrid import Fallback, Hybrid, blend_scores, normalise_scores

FAST = settings(max_examples=80, deadline=None)
METHODS = ("minmax", "zscore", "rank")


# -- normalising and blending ----------------------------------------------------------------
@st.composite
def scored(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """A (users x items) score array on a grid (so order survives rescaling) and a mask."""
    shape = draw(st.tuples(st.integers(1, 4), st.integers(1, 12)))
    values = draw(hnp.arrays(np.int64, shape, elements=st.integers(-50, 50)))
    mask = draw(hnp.arrays(np.bool_, shape))
    return values.astype(np.float32) / 4, mask


@FAST
@given(data=scored(), method=st.sampled_from(METHODS))
def test_normalised_scores_are_bounded_and_zero_outside_the_mask(
    data: tuple[np.ndarray, np.ndarray], method: str
) -> None:
    scores, mask = data
    out = normalise_scores(scores, mask, method)  # type: ignore[arg-type]
    assert out.shape == scores.shape and np.isfinite(out).all()
    assert (out[~mask] == 0).all()
    counts = mask.sum(axis=1)
    if method == "zscore":
        bound = np.sqrt(np.maximum(counts - 1, 0))[:, None] + 1e-9
        assert (np.abs(out) <= bound).all()
    else:
        assert ((out >= 0) & (out <= 1)).all()
        # the best allowed item gets 1, the worst 0 (for ranks: when neither is tied)
        varied = [
            row
            for row in range(len(scores))
            if len(set(scores[row][mask[row]])) > (1 if method == "minmax" else 0)
            and (method == "minmax" or len(set(scores[row][mask[row]])) == mask[row].sum() > 1)
        ]
        for row in varied:
            assert out[row][mask[row]].max() == pytest.approx(1.0)
            assert out[row][mask[row]].min() == pytest.approx(0.0)


@FAST
@given(data=scored(), method=st.sampled_from(METHODS))
def test_normalising_keeps_the_order_of_allowed_items(
    data: tuple[np.ndarray, np.ndarray], method: str
) -> None:
    scores, mask = data
    out = normalise_scores(scores, mask, method)  # type: ignore[arg-type]
    for row in range(len(scores)):
        allowed = np.flatnonzero(mask[row])
        for i in allowed:
            for j in allowed:
                if scores[row, i] < scores[row, j]:
                    assert out[row, i] < out[row, j]
                elif scores[row, i] == scores[row, j]:
                    assert out[row, i] == out[row, j]


@FAST
@given(
    data=scored(),
    other=hnp.arrays(np.float64, 12, elements=st.floats(allow_nan=True, allow_infinity=True)),
    weight=st.floats(0.01, 100),
    method=st.sampled_from(METHODS),
)
def test_a_component_with_weight_zero_is_ignored(
    data: tuple[np.ndarray, np.ndarray], other: np.ndarray, weight: float, method: str
) -> None:
    scores, mask = data
    noise = np.broadcast_to(other[: scores.shape[1]], scores.shape)
    blended = blend_scores([scores, noise], [weight, 0.0], mask, method)  # type: ignore[arg-type]
    np.testing.assert_array_equal(blended, normalise_scores(scores, mask, method))  # type: ignore[arg-type]


@FAST
@given(data=scored(), k=st.integers(1, 12), method=st.sampled_from(METHODS))
def test_a_blend_of_one_component_has_its_ranking(
    data: tuple[np.ndarray, np.ndarray], k: int, method: str
) -> None:
    scores, mask = data
    blended = blend_scores([scores], [3.0], mask, method)  # type: ignore[arg-type]
    # float32, as models rank (top_k breaks float64 ties unreliably)
    ranked = np.where(mask, blended, -np.inf).astype(np.float32)
    expected = np.where(mask, scores, -np.inf).astype(np.float32)
    np.testing.assert_array_equal(top_k(ranked, k)[0], top_k(expected, k)[0])


def test_normalise_edge_cases() -> None:
    constant = np.array([[2.0, 2.0, 2.0]])
    for method in METHODS:
        assert (normalise_scores(constant, None, method) == 0).all()  # type: ignore[arg-type]
    with_gaps = np.array([[np.nan, 1.0, np.inf, -np.inf, 3.0]])
    np.testing.assert_allclose(normalise_scores(with_gaps), [[0.0, 0.0, 1.0, 0.0, 1.0]])
    np.testing.assert_allclose(
        normalise_scores(np.array([[1.0, 2.0, 2.0, 4.0]]), None, "rank"), [[0, 0.5, 0.5, 1]]
    )
    with pytest.raises(ValueError, match="at least one blend weight"):
        blend_scores([constant], [0.0])
    with pytest.raises(ValueError, match="normalise must be"):
        normalise_scores(constant, None, "softmax")  # type: ignore[arg-type]


# -- the hybrid model ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shop(small_demo: Dataset) -> Dataset:
    return small_demo


@pytest.fixture(scope="module")
def hybrid(shop: Dataset) -> Hybrid:
    model = create_model("hybrid").fit(shop)
    assert isinstance(model, Hybrid)
    return model


def _users(data: Dataset, n: int = 15) -> list[object]:
    return list(data.users.external_ids[:n])


def test_default_blend_is_als_with_some_content(hybrid: Hybrid) -> None:
    assert hybrid.params.components == {"als": 0.85, "content": 0.15}
    assert set(hybrid.components_) == {"als", "content"}


@pytest.mark.parametrize("name", ["content", "popularity"])
def test_hybrid_of_one_model_ranks_like_that_model(shop: Dataset, name: str) -> None:
    other = "popularity" if name == "content" else "content"
    single = create_model("hybrid", components={name: 1.0, other: 0.0}).fit(shop)
    assert isinstance(single, Hybrid) and set(single.components_) == {name}  # 0: not trained
    alone = create_model(name).fit(shop)
    users = _users(shop)
    for filters in (None, Range("price", high=25)):
        mine = single.recommend(users, k=8, filters=filters)
        theirs = alone.recommend(users, k=8, filters=filters)
        pd.testing.assert_frame_equal(mine[["user_id", "item_id"]], theirs[["user_id", "item_id"]])
        # normalised over the allowed items: each user's best one scores 1
        np.testing.assert_allclose(mine.groupby("user_id")["score"].max(), 1.0)


def test_hybrid_blend_improves_on_als_with_content_on_the_demo(shop: Dataset) -> None:
    from rekko.data.splits import RandomSplit
    from rekko.evaluation import evaluate

    table = evaluate(
        {name: create_model(name) for name in ("hybrid", "als", "content")},
        shop,
        RandomSplit(0.2, seed=5),
    ).set_index("model")
    # On this small shop content is the stronger signal; the blend adds it to ALS.
    assert table.loc["hybrid", "ndcg@10"] > table.loc["als", "ndcg@10"]


@pytest.mark.slow
def test_default_hybrid_keeps_the_accuracy_of_als_on_movielens(ml100k: Dataset) -> None:
    from rekko.data.splits import RandomSplit
    from rekko.evaluation import evaluate
    from rekko.evaluation.evaluate import Protocol

    table = evaluate(
        {name: create_model(name) for name in ("hybrid", "fallback")},
        ml100k,
        RandomSplit(0.2, seed=42),
        protocol=Protocol(beyond_accuracy=False),
    ).set_index("model")
    # ALS alone: 0.444; the default blend measured 0.442 (content alone: 0.054).
    assert 0.42 <= table.loc["hybrid", "ndcg@10"] <= 0.47
    assert 0.42 <= table.loc["fallback", "ndcg@10"] <= 0.47


def test_components_as_pairs_and_parameter_errors() -> None:
    model = create_model("hybrid", components=[["content", 2], ["popularity", 1]])
    assert model.params.components == {"content": 2.0, "popularity": 1.0}  # type: ignore[attr-defined]
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        create_model("hybrid", components={"nope": 1.0})
    with pytest.raises(ModelError, match="at least one component weight"):
        create_model("hybrid", components={"content": 0.0})
    with pytest.raises(ModelError, match=">= 0"):
        create_model("hybrid", components={"content": -1.0})
    with pytest.raises(ModelError, match="cannot contain itself"):
        create_model("hybrid", components={"hybrid": 1.0})
    with pytest.raises(ModelError, match="not in components"):
        create_model("hybrid", component_params={"random": {"seed": 1}})
    with pytest.raises(ModelError, match=r"component 'content'.*no_such"):
        create_model("hybrid", component_params={"content": {"no_such": 1}})


def test_component_errors_name_the_component() -> None:
    frame = pd.DataFrame({"user_id": ["u", "v"], "item_id": ["i", "j"]})
    chosen = create_model("hybrid", components={"als": 0.85, "content": 0.15})
    with pytest.raises(ModelError, match=r"hybrid: component 'content': content: needs an item"):
        chosen.fit(Dataset.from_frame(frame))
    # The default blend on data without item features is ALS alone.
    default = create_model("hybrid").fit(Dataset.from_frame(frame))
    assert set(default.components_) == {"als"}  # type: ignore[attr-defined]
    only_popularity = create_model("hybrid", components={"popularity": 1.0})
    assert len(only_popularity.fit(Dataset.from_frame(frame)).recommend(["u"], k=5)) == 1


def test_save_and_load_restore_every_component(
    hybrid: Hybrid, shop: Dataset, tmp_path: Path
) -> None:
    hybrid.save(tmp_path / "hybrid")
    loaded = load_model(tmp_path / "hybrid")
    assert isinstance(loaded, Hybrid)
    users = _users(shop)
    filters = Range("price", low=5, high=40)
    pd.testing.assert_frame_equal(
        loaded.recommend(users, k=6, filters=filters), hybrid.recommend(users, k=6, filters=filters)
    )
    assert loaded.explain("i0001", user=users[0]) == hybrid.explain("i0001", user=users[0])
    with np.load(tmp_path / "hybrid" / "state.npz", allow_pickle=False) as state:
        assert {"roles", "content__word_terms", "als__item_factors"} <= set(state.files)


def test_similar_items_blend_the_components_that_can(shop: Dataset) -> None:
    blend = create_model("hybrid", components={"content": 0.5, "popularity": 0.5}).fit(shop)
    similar = blend.similar_items(["i0000"], k=5)
    content = blend.components_["content"].similar_items(["i0000"], k=5)  # type: ignore[attr-defined]
    assert similar["similar_item_id"].tolist() == content["similar_item_id"].tolist()
    default = create_model("hybrid").fit(shop).similar_items(["i0000"], k=5)
    assert len(default) == 5 and "i0000" not in set(default["similar_item_id"])


# -- boosts ----------------------------------------------------------------------------------
def test_a_large_boost_puts_matching_items_first(hybrid: Hybrid, shop: Dataset) -> None:
    assert shop.item_features is not None
    category = shop.item_features.frame["category"].to_numpy()
    users = _users(shop, 5)
    plain = hybrid.recommend(users, k=5)
    boosted = hybrid.recommend(users, k=5, boosts=[Boost(Equals("category", "books"), 1.5)])
    assert (category[shop.items.to_index(boosted["item_id"])] == "books").all()
    # the boost lasts for one call only
    pd.testing.assert_frame_equal(hybrid.recommend(users, k=5), plain)
    demoted = hybrid.recommend(users, k=5, boosts=[Boost(Equals("category", "books"), -1.5)])
    assert not (category[shop.items.to_index(demoted["item_id"])] == "books").any()


def test_distance_boosts_decay_linearly(shop: Dataset) -> None:
    assert shop.item_features is not None
    features = shop.item_features
    frame = features.frame
    lat, lon = float(frame["latitude"][0]), float(frame["longitude"][0])
    strength = match_strength(Within(lat, lon, 50), features)
    assert strength[0] == pytest.approx(1.0)
    assert ((strength >= 0) & (strength <= 1)).all()
    far = match_strength(Within(lat, lon, 50), features) == 0
    assert far.any() and (~far).sum() < len(frame)
    both = match_strength(AllOf((Within(lat, lon, 50), Equals("category", "books"))), features)
    books = frame["category"].to_numpy() == "books"
    np.testing.assert_allclose(both, strength * books)


def test_parse_boosts_forms_and_errors() -> None:
    boosts = parse_boosts(
        [
            {"where": {"category": "books"}, "weight": 0.2},
            {"where": {"near": {"lat": 52.5, "lon": 13.4, "km": 5}}, "weight": "0.1"},
            {"where": {"category": "books", "price": {"max": 9}}, "weight": -1},
        ]
    )
    assert boosts[0] == Boost(Equals("category", "books"), 0.2)
    assert boosts[1] == Boost(Within(52.5, 13.4, 5.0), 0.1)
    assert isinstance(boosts[2].constraint, AllOf) and boosts[2].weight == -1
    with pytest.raises(DataError, match="list of"):
        parse_boosts({"where": {}, "weight": 1})  # type: ignore[arg-type]
    with pytest.raises(DataError, match="boost 1: expected"):
        parse_boosts([{"category": "books"}])
    with pytest.raises(DataError, match="boost 1: weight must be a number"):
        parse_boosts([{"where": {"category": "books"}, "weight": "lots"}])
    with pytest.raises(DataError, match="finite"):
        Boost(Equals("category", "books"), math.inf)


# -- the fallback chain ----------------------------------------------------------------------
def _mixed() -> Dataset:
    """Users with many, few and no events; a user feature ``country``; item features."""
    items = pd.DataFrame(
        {
            "item_id": [f"i{n}" for n in range(12)],
            "title": [
                "red apple pie",
                "apple crumble",
                "apple juice",
                "green salad",
                "tomato salad",
                "fish soup",
                "fish curry",
                "spicy fish",
                "chocolate cake",
                "lemon cake",
                "carrot cake",
                "plain bread",
            ],
            "kind": ["sweet"] * 3 + ["veg"] * 2 + ["fish"] * 3 + ["sweet"] * 3 + ["bread"],
            "price": [5, 4, 2, 6, 6, 9, 12, 11, 7, 6, 6, 1],
        }
    )
    rows = [("heavy", f"i{n}") for n in (0, 1, 2, 8, 9, 10)]
    rows += [("light", "i5"), ("light", "i6")]
    rows += [(f"fr{n}", item) for n in range(4) for item in ("i5", "i6", "i7")]
    rows += [(f"de{n}", item) for n in range(4) for item in ("i8", "i9", "i10")]
    users = pd.DataFrame(
        {
            "user_id": ["heavy", "light", "newbie", "nobody"]
            + [f"fr{n}" for n in range(4)]
            + [f"de{n}" for n in range(4)],
            "country": ["DE", "FR", "FR", None] + ["FR"] * 4 + ["DE"] * 4,
        }
    )
    return Dataset.from_frame(
        pd.DataFrame(rows, columns=["user_id", "item_id"]),
        item_features=items,
        user_features=users,
        item_feature_kinds={"title": "text", "kind": "categorical", "price": "numeric"},
        user_feature_kinds={"country": "categorical"},
    )


@pytest.fixture(scope="module")
def fallback() -> Fallback:
    model = create_model("fallback", primary="hybrid", min_interactions=3).fit(_mixed())
    assert isinstance(model, Fallback)
    return model


def test_each_user_is_routed_by_history(fallback: Fallback) -> None:
    assert fallback.route_of(["heavy", "light", "newbie", "nobody"]) == [
        "primary",
        "content",
        "demographic",
        "popularity",
    ]


def test_everyone_gets_recommendations(fallback: Fallback) -> None:
    users = ["heavy", "light", "newbie", "nobody"]
    recs = fallback.recommend(users, k=4)
    assert recs.groupby("user_id").size().to_dict() == dict.fromkeys(users, 4)
    light = recs.loc[recs["user_id"] == "light", "item_id"].tolist()
    assert light[0] == "i7"  # the other fish dish, by content
    newbie = recs.loc[recs["user_id"] == "newbie", "item_id"].tolist()
    assert set(newbie[:3]) == {"i5", "i6", "i7"}  # what French users took
    nobody = recs.loc[recs["user_id"] == "nobody", "item_id"].tolist()
    popular = create_model("popularity").fit(_mixed())
    assert nobody == popular.recommend_query(None, k=4)["item_id"].tolist()


def test_cold_preferences_go_down_the_chain(fallback: Fallback) -> None:
    by_text = fallback.recommend_query("fish", k=3)
    assert by_text.attrs["source"] == "content"
    assert set(by_text["item_id"]) == {"i5", "i6", "i7"}
    by_kind = fallback.recommend_query({"kind": "veg"}, k=2)
    assert set(by_kind["item_id"]) == {"i3", "i4"}
    by_country = fallback.recommend_query({"country": "de"}, k=3)
    assert by_country.attrs["source"] == "demographic"
    assert set(by_country["item_id"]) == {"i8", "i9", "i10"}
    for nothing in (None, "qqqq", {"country": "Mars"}):
        recs = fallback.recommend_query(nothing, k=3)
        assert recs.attrs["source"] == "popularity" and len(recs) == 3
    cheap = fallback.recommend_query("cake", k=10, filters=Range("price", high=6))
    assert len(cheap) == 8 and set(cheap["item_id"][:2]) == {"i9", "i10"}
    with pytest.raises(DataError, match="unknown features"):
        fallback.recommend_query({"colour": "red"})


def test_cold_recommendations_take_boosts(fallback: Fallback) -> None:
    recs = fallback.recommend_query("fish", k=1, boosts=[Boost(Equals("kind", "bread"), 5.0)])
    assert recs["item_id"].tolist() == ["i11"]


def test_fallback_saves_and_loads(fallback: Fallback, tmp_path: Path) -> None:
    fallback.save(tmp_path / "fallback")
    loaded = load_model(tmp_path / "fallback")
    assert isinstance(loaded, Fallback)
    users = ["heavy", "light", "newbie", "nobody"]
    pd.testing.assert_frame_equal(loaded.recommend(users, k=5), fallback.recommend(users, k=5))
    for preferences in ("fish", {"country": "de"}, None):
        pd.testing.assert_frame_equal(
            loaded.recommend_query(preferences, k=4), fallback.recommend_query(preferences, k=4)
        )


def test_fallback_folds_in_new_users() -> None:
    model = create_model("fallback", min_interactions=3).fit(_mixed())
    assert isinstance(model, Fallback)
    model.add_interactions(["stranger"], ["i8"])
    assert model.route_of(["stranger"]) == ["content"]
    assert model.recommend(["stranger"], k=2)["item_id"].tolist()[0] in {"i9", "i10"}
    model.add_interactions(["stranger"] * 3, ["i0", "i1", "i2"])
    assert model.route_of(["stranger"]) == ["primary"]
    assert len(model.recommend(["stranger"], k=3)) == 3


def test_fallback_without_item_features_skips_content() -> None:
    frame = pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "x"]})
    model = create_model("fallback", primary="popularity", min_interactions=2).fit(
        Dataset.from_frame(frame)
    )
    assert isinstance(model, Fallback) and "content" not in model.components_
    assert model.route_of(["a", "b"]) == ["primary", "primary"]
    assert model.recommend_query("anything", k=2).attrs["source"] == "popularity"


def test_every_fiverr_client_and_a_new_one_are_served(datasets_dir: Path) -> None:
    from rekko.data.loaders import load_fiverr

    data = load_fiverr(datasets_dir / "fiverr")
    model = create_model("fallback", primary="popularity").fit(data)
    assert isinstance(model, Fallback)
    clients = list(data.users.external_ids)
    counts = np.diff(data.matrix.indptr)
    expected = np.where(counts >= 5, "primary", "content").tolist()
    assert model.route_of(clients) == expected  # almost every client reviewed one gig
    assert expected.count("content") > 0.99 * len(clients)
    recs = model.recommend(clients, k=5)
    assert (recs.groupby("user_id").size() == 5).all() and recs["user_id"].nunique() == len(clients)
    assert data.item_features is not None
    frame = data.item_features.frame
    wanted = model.recommend_query(
        {"gig_design_style": "anime", "text": "cute chibi"},
        k=10,
        filters=Range("gig_price_from", high=30),
    )
    assert wanted.attrs["source"] == "content"
    index = data.items.to_index(wanted["item_id"])
    styles = frame["gig_design_style"].to_numpy()[index]
    assert (styles[:5] == "anime").all()  # then cartoon chibis: the words match too
    assert (frame["gig_price_from"].to_numpy()[index] <= 30).all()
