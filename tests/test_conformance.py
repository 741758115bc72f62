"""The conformance suite: every registered model, found by walking the registry, must pass.

Each model is fitted with its default parameters on a small demo shop (implicit events with
item and user features), as a user who never tunes would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rekko.constraints import Range
from rekko.data.dataset import Dataset
from rekko.data.splits import RandomSplit
from rekko.errors import DataError, ModelError, RekkoError, UnknownIdError
from rekko.models import Query, Recommender, available_models, create_model, load_model
from rekko.models.cold import ROUTES
from rekko.models.contract import SCORE_KINDS, ExportContract, Network, SideInputs

MODELS = available_models()


@pytest.fixture(scope="module")
def parts(small_demo: Dataset) -> tuple[Dataset, Dataset]:
    return RandomSplit(test_fraction=0.2, seed=11).split(small_demo)


class _Fitted(dict[str, Recommender]):
    """Models fitted with default parameters on first use, once per module."""

    def __init__(self, train: Dataset) -> None:
        super().__init__()
        self.train = train

    def __missing__(self, name: str) -> Recommender:
        model = create_model(name).fit(self.train)
        self[name] = model
        return model


@pytest.fixture(scope="module")
def fitted(parts: tuple[Dataset, Dataset]) -> dict[str, Recommender]:
    return _Fitted(parts[0])


def test_registry_holds_the_baselines() -> None:
    assert {"popularity", "random"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_recommends_k_unseen_items(name: str, fitted: dict[str, Recommender], parts) -> None:
    train, _ = parts
    model = fitted[name]
    users = list(train.users.external_ids[:20])
    recs = model.recommend(users, k=7)
    assert list(recs.columns) == ["user_id", "item_id", "rank", "score"]
    seen = train.to_frame()
    for user, group in recs.groupby("user_id", sort=False):
        history = set(seen.loc[seen["user_id"] == user, "item_id"])
        assert len(group) == min(7, train.n_items - len(history))
        assert not history & set(group["item_id"]), "a training item was recommended"
        assert group["rank"].tolist() == list(range(1, len(group) + 1))
        assert np.all(np.diff(group["score"].to_numpy()) <= 1e-6), "scores must not increase"
        assert group["item_id"].is_unique


@pytest.mark.parametrize("name", MODELS)
def test_batch_and_single_agree(name: str, fitted: dict[str, Recommender], parts) -> None:
    train, _ = parts
    model = fitted[name]
    users = list(train.users.external_ids[:10])
    batch = model.recommend(users, k=5)
    for user in users[:3]:
        single = model.recommend([user], k=5)
        expected = batch[batch["user_id"] == user].reset_index(drop=True)
        pd.testing.assert_frame_equal(single, expected, check_exact=False, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_save_load_gives_identical_answers(
    name: str, fitted: dict[str, Recommender], parts, tmp_path: Path
) -> None:
    train, _ = parts
    model = fitted[name]
    model.save(tmp_path / name)
    loaded = load_model(tmp_path / name)
    assert type(loaded) is type(model)
    assert loaded.params == model.params
    users = list(train.users.external_ids[:15])
    pd.testing.assert_frame_equal(loaded.recommend(users, k=8), model.recommend(users, k=8))
    items = list(train.items.external_ids[:10])
    np.testing.assert_allclose(loaded.score(users[0], items), model.score(users[0], items))
    for path in (tmp_path / name).rglob("*"):
        assert path.suffix not in {".pkl", ".pickle", ".joblib"}


@pytest.mark.parametrize("name", MODELS)
def test_fitting_twice_is_deterministic(name: str, parts) -> None:
    train, _ = parts
    users = list(train.users.external_ids[:15])
    first = create_model(name).fit(train).recommend(users, k=6)
    second = create_model(name).fit(train).recommend(users, k=6)
    pd.testing.assert_frame_equal(first, second)


@pytest.mark.parametrize("name", MODELS)
def test_filters_candidates_and_exclusions_are_obeyed(
    name: str, fitted: dict[str, Recommender], parts
) -> None:
    train, _ = parts
    model = fitted[name]
    assert train.item_features is not None
    price = train.item_features.frame["price"].to_numpy()
    users = list(train.users.external_ids[:10])
    cheap = model.recommend(users, k=5, filters=Range("price", high=20))
    allowed = set(train.items.external_ids[price <= 20])
    assert set(cheap["item_id"]) <= allowed
    candidates = list(train.items.external_ids[:30])
    excluded = candidates[:5]
    recs = model.recommend(users, k=5, candidates=candidates, exclude=excluded)
    assert set(recs["item_id"]) <= set(candidates) - set(excluded)
    assert recs.groupby("user_id").size().min() > 0


@pytest.mark.parametrize("name", MODELS)
def test_unknown_users_are_handled_as_documented(name: str, fitted: dict[str, Recommender]) -> None:
    model = fitted[name]
    with pytest.raises(UnknownIdError, match="no-such-user"):
        model.recommend(["no-such-user"], k=3)
    known = model.users_.external_ids[0] if model.users_ is not None else None
    recs = model.recommend([known, "no-such-user"], k=3, unknown="skip")
    assert set(recs["user_id"]) == {known}


@pytest.mark.parametrize("name", MODELS)
def test_new_events_are_excluded_at_once(name: str, parts) -> None:
    train, _ = parts
    model = create_model(name).fit(train)
    user = train.users.external_ids[0]
    first = model.recommend([user], k=3)["item_id"].tolist()
    assert model.add_interactions([user] * len(first), first) == len(first)
    after = model.recommend([user], k=3)["item_id"].tolist()
    assert not set(first) & set(after)
    if model.abilities.fold_in:
        new_user = "brand-new-user"
        model.add_interactions([new_user, new_user], first[:2])
        assert not set(first[:2]) & set(model.recommend([new_user], k=5)["item_id"])


@pytest.mark.parametrize("name", MODELS)
def test_declared_abilities_match_behaviour(name: str, fitted: dict[str, Recommender]) -> None:
    model = fitted[name]
    item = model.items_.external_ids[0] if model.items_ is not None else None
    user = model.users_.external_ids[0] if model.users_ is not None else None
    if model.abilities.similar_items:
        similar = model.similar_items([item], k=4)
        assert len(similar) == 4 and item not in set(similar["similar_item_id"])
    else:
        with pytest.raises(ModelError, match=name):
            model.similar_items([item], k=4)
    if model.abilities.explicit:
        prediction = model.predict([user], [item])
        assert prediction.shape == (1,) and np.isfinite(prediction).all()
    else:
        with pytest.raises(ModelError, match=name):
            model.predict([user], [item])


@pytest.mark.parametrize("name", MODELS)
def test_bad_parameters_are_clear_errors(name: str) -> None:
    with pytest.raises(RekkoError, match="no_such_parameter"):
        create_model(name, no_such_parameter=1)


@pytest.mark.parametrize("name", MODELS)
def test_config_round_trips(name: str) -> None:
    model = create_model(name)
    again = create_model(name, **model.params.model_dump(mode="json"))
    assert again.params == model.params


@pytest.mark.parametrize("name", MODELS)
def test_explain_gives_reasons_from_the_users_history(
    name: str, fitted: dict[str, Recommender], parts
) -> None:
    train, _ = parts
    model = fitted[name]
    user = train.users.external_ids[0]
    item = model.recommend([user], k=1)["item_id"].iloc[0]
    if not model.abilities.explains:
        with pytest.raises(ModelError, match="does not support"):
            model.explain(item, user=user)
        return
    reasons = model.explain(item, user=user)
    assert isinstance(reasons, list) and all(isinstance(r, str) and r for r in reasons)
    if type(model).explain is Recommender.explain:
        history = set(map(str, train.to_frame().query("user_id == @user")["item_id"]))
        assert reasons, "an item recommended from a history has a most similar history item"
        for reason in reasons:
            assert reason.startswith("because you liked ")
            assert reason.removeprefix("because you liked ") in history
        with pytest.raises(ModelError, match="not queries"):
            model.explain(item, query="anything")


# -- the ranking call, queries and copies ----------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_rank_is_what_recommend_returns(name: str, fitted: dict[str, Recommender], parts) -> None:
    train, _ = parts
    model = fitted[name]
    users = np.arange(12)
    best, scores = model.rank(users, 6)
    assert best.shape == scores.shape == (12, 6) and best.dtype == np.int64
    frame = model.recommend(list(train.users.external_ids[:12]), k=6)
    assert frame["item_id"].tolist() == list(train.items.to_external(best[best >= 0]))
    np.testing.assert_allclose(frame["score"].to_numpy(), scores[best >= 0], rtol=1e-6)
    allowed = np.zeros(train.n_items, dtype=bool)
    allowed[::3] = True
    narrowed, _ = model.rank(users, 6, allowed=allowed)
    assert allowed[narrowed[narrowed >= 0]].all()
    wide, wide_scores = model.rank(users[:2], train.n_items + 5)
    assert wide.shape == (2, train.n_items + 5) and (wide[:, -5:] == -1).all()
    assert np.isneginf(wide_scores[:, -5:]).all()
    with pytest.raises(ModelError, match="user indices"):
        model.rank([train.n_users], 3)
    with pytest.raises(ModelError, match="k must be at least 1"):
        model.rank(users, 0)


@pytest.mark.parametrize("name", MODELS)
def test_every_model_answers_queries(name: str, fitted: dict[str, Recommender], parts) -> None:
    train, _ = parts
    model = fitted[name]
    everyone = model.rank_query(Query(), 5)
    assert len(everyone.items) == 5 and everyone.source in (*ROUTES, model.name)
    basket = list(train.items.external_ids[:3])
    answer = model.recommend_query(Query(basket=basket), k=6)
    assert len(answer) == 6 and not set(basket) & set(answer["item_id"])
    assert np.all(np.diff(answer["score"].to_numpy()) <= 1e-6)
    features = train.item_features
    assert features is not None
    stated = model.recommend_query({"category": "books"}, k=4)
    if stated.attrs["source"] in ROUTES:  # the shared route reads preferences as constraints
        index = train.items.to_index(stated["item_id"])
        assert (features.frame["category"].to_numpy()[index] == "books").all()
    with pytest.raises(DataError):
        model.recommend_query({"no_such_feature": 1}, k=3)
    if model.abilities.queries:
        own = model.recommend_query(Query(text="books", basket=basket[:1]), k=3, strict=True)
        assert own.attrs["source"] not in ROUTES and not set(basket[:1]) & set(own["item_id"])
    else:
        with pytest.raises(ModelError, match="does not support queries"):
            model.recommend_query("books", k=3, strict=True)


@pytest.mark.parametrize("name", MODELS)
def test_events_folded_into_a_copy_leave_the_original_serving(name: str, parts) -> None:
    train, _ = parts
    model = create_model(name).fit(train)
    user = train.users.external_ids[0]
    item = model.recommend([user], k=1)["item_id"].iloc[0]  # unseen by the user
    fresh = model.copy()
    fresh.add_interactions(["someone-new", user], [item, item])
    # the copy has the events...
    assert item not in set(fresh.recommend([user], k=train.n_items)["item_id"])
    assert ("someone-new" in fresh.fitted().users) == fresh.abilities.fold_in
    # ...the original, which in-flight requests may still hold, does not
    assert "someone-new" not in model.fitted().users
    assert model.fitted().seen.shape == (train.n_users, train.n_items)
    assert model.recommend([user], k=1)["item_id"].iloc[0] == item
    assert len(model.recommend(list(train.users.external_ids[:5]), k=4)) == 20


# -- export ---------------------------------------------------------------------------------
def _pair_inputs(
    users: SideInputs, items: SideInputs, user_index: np.ndarray, item_index: np.ndarray
) -> dict[str, np.ndarray]:
    """The pair network's inputs for index pairs, built from the contract alone."""
    inputs: dict[str, np.ndarray] = {}
    for side, index in ((users, user_index), (items, item_index)):
        inputs[side.id_input] = np.where(side.trained[index], index + 1, 0).astype(np.int32)
        inputs.update({name: np.asarray(codes)[index] for name, codes in side.codes.items()})
    return inputs


def _check_network(network: Network, width: int | None) -> None:
    rows = {len(array) for array in network.example.values()}
    output = np.asarray(network.model(dict(network.example), training=False))
    assert output.dtype == np.float32
    assert output.shape == ((*rows, width) if width is not None else (*rows,))


@pytest.mark.parametrize("name", MODELS)
def test_export_contract_is_none_or_well_formed(
    name: str, fitted: dict[str, Recommender], parts
) -> None:
    train, _ = parts
    model = fitted[name]
    contract = model.export_contract()
    if contract is None:
        from rekko.export import export_savedmodel

        with pytest.raises(ModelError, match=name):
            export_savedmodel(model, Path("never-written"))
        return
    assert isinstance(contract, ExportContract)
    n_users, n_items = len(model.fitted().users), len(model.fitted().items)
    users = np.arange(min(8, n_users))
    if contract.embeddings is not None:
        embeddings = contract.embeddings
        assert embeddings.score in SCORE_KINDS
        assert embeddings.user_vectors.shape == (n_users, embeddings.dim)
        assert embeddings.item_vectors.shape == (n_items, embeddings.dim)
        assert embeddings.fallback.shape == (embeddings.dim,)
        for array in (embeddings.user_vectors, embeddings.item_vectors, embeddings.fallback):
            assert array.dtype == np.float32 and np.isfinite(array).all()
        # the vectors give the model's own scores
        best, scores = model.rank(users, 5, exclude_seen=False)
        dots = embeddings.user_vectors[users] @ embeddings.item_vectors.T + embeddings.offset
        np.testing.assert_allclose(
            np.take_along_axis(dots, best, axis=1), scores, rtol=1e-4, atol=1e-5
        )
    if contract.user_tower is not None:
        assert contract.embeddings is not None
        _check_network(contract.user_tower, contract.embeddings.dim)
    if contract.pair_scorer is not None:
        scorer = contract.pair_scorer
        assert scorer.score in SCORE_KINDS
        assert len(scorer.users) == n_users and len(scorer.items) == n_items
        for side in (scorer.users, scorer.items):
            for array in side.codes.values():
                assert array.dtype in (np.int32, np.float32)
        _check_network(scorer.network, None)
        # the network's raw output, turned into a score as the contract says, is score()
        items = np.arange(len(users)) % n_items
        raw = np.asarray(
            scorer.network.model(_pair_inputs(scorer.users, scorer.items, users, items)),
            dtype=np.float64,
        )
        score = 1 / (1 + np.exp(-raw)) if scorer.score == "probability" else raw + scorer.offset
        expected = [
            model.score(train.users.external_ids[u], [train.items.external_ids[i]])[0]
            for u, i in zip(users, items, strict=True)
        ]
        np.testing.assert_allclose(score, expected, rtol=1e-4, atol=1e-5)
    for labels in contract.vocabularies.values():
        assert isinstance(labels["labels"], list)
