"""TensorFlow models: known answers, cold users from features, fold-in, heads, ranking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rekko.data.dataset import Dataset
from rekko.errors import DataError, ModelError
from rekko.models import Query, create_model, load_model
from rekko.models.multitask import MultitaskTwoTower
from rekko.models.ranking import RankingModel
from rekko.models.two_tower import TwoTower

GROUPS = 4
ITEMS_PER_GROUP = 10
USERS_PER_GROUP = 12
SEEN_PER_USER = 8
FAST = {"max_epochs": 40, "validation_fraction": 0.0, "batch_size": 64}
FAST_PAIRS = {"max_epochs": 40, "validation_fraction": 0.0, "batch_size": 256}


def block_frames(seed: int = 5) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Users of group g only use items of group g: each sees 8 of the group's 10 items.

    The known answer: for every user, the two best unseen items are the two unseen items of
    their own group. Users and items carry their group as a feature.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for group in range(GROUPS):
        for member in range(USERS_PER_GROUP):
            chosen = rng.choice(ITEMS_PER_GROUP, SEEN_PER_USER, replace=False)
            rows += [(f"u{group}-{member}", f"i{group}-{item}") for item in sorted(chosen)]
    events = pd.DataFrame(rows, columns=["user_id", "item_id"])
    items = pd.DataFrame(
        {
            "item_id": [f"i{g}-{i}" for g in range(GROUPS) for i in range(ITEMS_PER_GROUP)],
            "genre": [f"g{g}" for g in range(GROUPS) for _ in range(ITEMS_PER_GROUP)],
        }
    )
    users = pd.DataFrame(
        {
            "user_id": [f"u{g}-{m}" for g in range(GROUPS) for m in range(USERS_PER_GROUP)],
            "group": [f"g{g}" for g in range(GROUPS) for _ in range(USERS_PER_GROUP)],
        }
    )
    return events, items, users


def group_of(external_id: object) -> str:
    """``"u2-5"`` or ``"i2-5"`` -> ``"2"``."""
    return str(external_id)[1:].split("-")[0]


@pytest.fixture(scope="module")
def blocks() -> Dataset:
    events, items, users = block_frames()
    return Dataset.from_frame(
        events,
        item_features=items,
        user_features=users,
        item_feature_kinds={"genre": "categorical"},
        user_feature_kinds={"group": "categorical"},
        name="blocks",
    )


@pytest.fixture(scope="module")
def two_tower(blocks: Dataset) -> TwoTower:
    model = create_model("two-tower", user_features=True, **FAST).fit(blocks)
    assert isinstance(model, TwoTower)
    return model


def test_two_tower_learns_the_blocks_perfectly(two_tower: TwoTower, blocks: Dataset) -> None:
    users = list(blocks.users.external_ids)
    recs = two_tower.recommend(users, k=2)
    seen = blocks.to_frame().groupby("user_id")["item_id"].apply(set)
    for user, group in recs.groupby("user_id"):
        expected = {f"i{group_of(user)}-{i}" for i in range(ITEMS_PER_GROUP)} - seen[user]
        assert set(group["item_id"]) == expected, user


def test_id_only_two_tower_also_learns_the_blocks(blocks: Dataset) -> None:
    # TFRS' quickstart model: ids only. Two dimensions force it to find the groups (with
    # more, a full softmax memorises each user's own items and pushes the others down).
    model = create_model(
        "two-tower",
        history=False,
        user_id=True,
        item_features=False,
        id_dropout=0.0,
        embedding_dim=2,
        **FAST,
    ).fit(blocks)
    recs = model.recommend(list(blocks.users.external_ids), k=2)
    assert (recs["user_id"].map(group_of) == recs["item_id"].map(group_of)).all()


def test_in_batch_softmax_learns_the_blocks(blocks: Dataset) -> None:
    model = create_model("two-tower", softmax="in-batch", **FAST).fit(blocks)
    recs = model.recommend(list(blocks.users.external_ids), k=2)
    assert (recs["user_id"].map(group_of) == recs["item_id"].map(group_of)).mean() > 0.95


def test_new_user_with_features_gets_their_group(two_tower: TwoTower) -> None:
    for group in range(GROUPS):
        recs = two_tower.recommend_query(
            Query(user_features={"group": f"g{group}"}), k=ITEMS_PER_GROUP, strict=True
        )
        assert (recs["item_id"].map(group_of) == str(group)).mean() >= 0.9, group
        assert recs["rank"].tolist() == list(range(1, len(recs) + 1))
    vectors = [two_tower.user_vector_for({"group": f"g{g}"}) for g in range(GROUPS)]
    assert np.linalg.norm(vectors[0] - vectors[1]) > 1e-3


def test_new_user_from_history_excludes_it(two_tower: TwoTower) -> None:
    history = ["i3-0", "i3-1", "i3-2"]
    recs = two_tower.recommend_query(Query(basket=history), k=3, strict=True)
    assert recs.attrs["source"] == "two-tower"
    assert not set(history) & set(recs["item_id"])
    assert (recs["item_id"].map(group_of) == "3").all()


def test_unknown_feature_names_are_clear_errors(two_tower: TwoTower) -> None:
    with pytest.raises(DataError, match="no_such_feature"):
        two_tower.recommend_query(Query(user_features={"no_such_feature": 1}))


def test_fold_in_serves_a_new_user_from_events(blocks: Dataset) -> None:
    model = create_model("two-tower", **FAST).fit(blocks)
    model.add_interactions(["newcomer"] * 3, ["i1-0", "i1-1", "i1-2"])
    recs = model.recommend(["newcomer"], k=4)
    assert (recs["item_id"].map(group_of) == "1").all()
    assert not {"i1-0", "i1-1", "i1-2"} & set(recs["item_id"])


def test_similar_items_share_the_group(two_tower: TwoTower) -> None:
    similar = two_tower.similar_items(["i2-0", "i0-3"], k=3)
    for item, group in similar.groupby("item_id"):
        assert (group["similar_item_id"].map(group_of) == group_of(item)).all()


def test_fold_in_survives_save_and_load(two_tower: TwoTower, tmp_path: Path) -> None:
    two_tower.save(tmp_path / "tt")
    loaded = load_model(tmp_path / "tt")
    assert isinstance(loaded, TwoTower)
    loaded.add_interactions(["late"] * 2, ["i0-0", "i0-1"])
    assert (loaded.recommend(["late"], k=3)["item_id"].map(group_of) == "0").all()


def test_multitask_heads_follow_event_strength() -> None:
    # Each user views 6 items of a group; items 0-2 of every group get carted, item 0 bought.
    rows = []
    for group in range(3):
        for member in range(10):
            for item in range(6):
                user, name = f"u{group}-{member}", f"i{group}-{item}"
                rows.append((user, name, "view"))
                if item < 3:
                    rows.append((user, name, "addtocart"))
                if item == 0:
                    rows.append((user, name, "transaction"))
    data = Dataset.from_frame(
        pd.DataFrame(rows, columns=["user_id", "item_id", "event"]),
        event_weights={"view": 1, "addtocart": 3, "transaction": 5},
    )
    model = create_model("multitask", **FAST).fit(data)
    assert isinstance(model, MultitaskTwoTower)
    assert model.head_names_ == ["addtocart", "transaction"]
    heads = model.predict_heads("u1-0", ["i1-0", "i1-2", "i1-5"]).set_index("item_id")
    assert list(heads.columns) == ["score", "addtocart", "transaction"]
    assert heads.loc["i1-0", "transaction"] > 0.5 > heads.loc["i1-5", "transaction"]
    assert heads.loc["i1-2", "addtocart"] > 0.5 > heads.loc["i1-5", "addtocart"]


def test_multitask_rejects_unknown_heads(blocks: Dataset) -> None:
    with pytest.raises(DataError, match="like"):
        create_model("multitask", heads={"like": 1.0}, **FAST).fit(blocks)


def test_multitask_on_ratings_has_a_rating_head(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "user_id": np.repeat(np.arange(30), 8),
            "item_id": rng.integers(0, 20, size=240),
            "rating": rng.integers(1, 6, size=240),
        }
    ).drop_duplicates(["user_id", "item_id"])
    model = create_model("multitask", **FAST).fit(Dataset.from_frame(frame))
    assert isinstance(model, MultitaskTwoTower)
    heads = model.predict_heads(0, [1, 2])
    assert "rating" in heads.columns and heads["rating"].between(0, 7).all()
    model.save(tmp_path / "mt")
    loaded = load_model(tmp_path / "mt")
    assert isinstance(loaded, MultitaskTwoTower)
    pd.testing.assert_frame_equal(loaded.predict_heads(0, [1, 2]), heads)


def _ratings() -> Dataset:
    """Ratings with a known structure: rating = 3 + user taste x item taste (+-1), noise-free."""
    users = np.repeat(np.arange(60), 15)
    rng = np.random.default_rng(2)
    items = np.concatenate([rng.choice(40, 15, replace=False) for _ in range(60)])
    taste = np.where(np.arange(60) % 2 == 0, 1.0, -1.0)
    kind = np.where(np.arange(40) % 2 == 0, 1.0, -1.0)
    frame = pd.DataFrame(
        {"user_id": users, "item_id": items, "rating": 3.0 + taste[users] * kind[items]}
    )
    return Dataset.from_frame(frame)


@pytest.mark.parametrize("name", ["ranking", "neural-mf", "neural-mlp"])
def test_pointwise_models_fit_known_ratings(name: str) -> None:
    data = _ratings()
    model = create_model(name, max_epochs=60, validation_fraction=0.0, l2=0.0, batch_size=128)
    model.fit(data)
    assert model.abilities.explicit
    pairs = data.to_frame()
    predicted = model.predict(list(pairs["user_id"]), list(pairs["item_id"]))
    rmse = float(np.sqrt(np.mean((predicted - pairs["rating"].to_numpy()) ** 2)))
    assert rmse < 0.35, rmse
    # An unknown user gets a finite prediction inside the rating range.
    fallback = model.predict(["nobody"], [pairs["item_id"].iloc[0]])
    assert np.isfinite(fallback).all() and 2.0 <= fallback[0] <= 4.0


def test_ranking_on_implicit_data_scores_probabilities(blocks: Dataset) -> None:
    model = create_model("ranking", **FAST_PAIRS).fit(blocks)
    assert isinstance(model, RankingModel)
    assert not model.abilities.explicit
    with pytest.raises(ModelError, match="ranking"):
        model.predict(["u0-0"], ["i0-0"])
    scores = model.score("u0-0", ["i0-1", "i2-1"])
    assert ((scores >= 0) & (scores <= 1)).all()
    assert scores[0] > scores[1]


def test_ranking_reranks_another_models_candidates(blocks: Dataset) -> None:
    ranking = create_model("ranking", **FAST_PAIRS).fit(blocks)
    assert isinstance(ranking, RankingModel)
    candidates = (
        create_model("random")
        .fit(blocks)
        .recommend(["u1-0", "u2-3", "ghost"], k=20, unknown="skip")
    )
    reranked = ranking.rerank(candidates, k=3)
    assert list(reranked.columns) == ["user_id", "item_id", "rank", "score"]
    assert list(reranked["user_id"].unique()) == ["u1-0", "u2-3"]
    for user, group in reranked.groupby("user_id"):
        assert len(group) == 3 and group["rank"].tolist() == [1, 2, 3]
        assert np.all(np.diff(group["score"].to_numpy()) <= 0)
        pool = candidates[candidates["user_id"] == user]
        own = pool[pool["item_id"].map(group_of) == group_of(user)]
        if len(own) >= 3:
            assert (group["item_id"].map(group_of) == group_of(user)).all()


def test_bad_settings_are_clear_errors(blocks: Dataset) -> None:
    with pytest.raises(ModelError, match="user tower has no inputs"):
        create_model("two-tower", history=False, **FAST).fit(blocks)
    with pytest.raises(ModelError, match="temperature"):
        create_model("two-tower", temperature=0)
    with pytest.raises(ModelError, match="at least one of dot, mlp and biases"):
        create_model("ranking", dot=False, mlp=False, biases=False, **FAST_PAIRS).fit(blocks)
