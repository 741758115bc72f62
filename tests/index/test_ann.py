"""The approximate index: recall against brute force, and exact exclusions and filters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from rekko.cli import app
from rekko.data.dataset import Dataset
from rekko.data.idmap import IdMap
from rekko.errors import ModelError
from rekko.index import ann
from rekko.index.ann import ANNIndex, HNSWSettings, IndexCache, wants_ann
from rekko.index.topk import top_k
from rekko.models import create_model
from rekko.models.spark_als import SparkALS, SparkALSParams

pytest.importorskip("faiss")

SEED = 42


def _factor_model(
    n_users: int, n_items: int, dims: int, *, seen_per_user: int = 5, seed: int = SEED
) -> SparkALS:
    """A fitted factor model with random vectors (built directly, no training needed)."""
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n_users), seen_per_user)
    cols = rng.integers(0, n_items, size=len(rows))
    seen = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
    return SparkALS.from_factors(
        SparkALSParams(factors=dims),
        users=IdMap(list(range(n_users)), "int"),
        items=IdMap([f"i{i}" for i in range(n_items)], "str"),
        seen=seen,
        user_factors=rng.standard_normal((n_users, dims)).astype(np.float32),
        item_factors=rng.standard_normal((n_items, dims)).astype(np.float32),
        rating_stats=None,
        metadata={},
    )


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(found, truth, strict=True)])
    )


def test_recall_at_10_against_brute_force_is_at_least_095() -> None:
    rng = np.random.default_rng(SEED)
    items = rng.standard_normal((20_000, 64)).astype(np.float32)
    queries = rng.standard_normal((500, 64)).astype(np.float32)
    truth, _ = top_k(queries @ items.T, 10)
    found, scores = ANNIndex(items).search(queries, 10)
    assert found.shape == (500, 10)
    assert _recall(found, truth) >= 0.95
    # The scores are the true inner products, best first.
    exact = np.einsum("ij,ikj->ik", queries, items[found])
    np.testing.assert_allclose(scores, exact, rtol=1e-4, atol=1e-4)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_recommend_through_the_index_obeys_exclusions_and_filters() -> None:
    model = _factor_model(200, 3_000, 32, seen_per_user=40)
    model.index_mode = "ann"
    users = list(range(50))
    candidates = [f"i{i}" for i in range(0, 3_000, 3)]  # a third of the catalogue
    excluded = candidates[:100]
    recs = model.recommend(users, k=10, candidates=candidates, exclude=excluded)
    assert model._ann_index._index is not None, "the index was not used"
    allowed = set(candidates) - set(excluded)
    seen = model.seen_
    assert seen is not None
    for user, group in recs.groupby("user_id"):
        assert len(group) == 10
        assert set(group["item_id"]) <= allowed
        history = {f"i{i}" for i in seen[int(user)].indices}
        assert not history & set(group["item_id"])
        assert group["rank"].tolist() == list(range(1, 11))
    model.index_mode = "exact"
    exact = model.recommend(users, k=10, candidates=candidates, exclude=excluded)
    pairs = set(zip(recs.user_id, recs.item_id, strict=True))
    overlap = len(pairs & set(zip(exact.user_id, exact.item_id, strict=True)))
    assert overlap / len(exact) >= 0.95


def test_too_few_survivors_fall_back_to_brute_force() -> None:
    model = _factor_model(30, 2_000, 16)
    users = list(range(30))
    # Five allowed items: the graph's answer cannot be trusted to hold them, brute force can.
    candidates = ["i7", "i99", "i500", "i1234", "i1999"]
    model.index_mode = "exact"
    exact = model.recommend(users, k=10, candidates=candidates, exclude_seen=False)
    model.index_mode = "ann"
    approximate = model.recommend(users, k=10, candidates=candidates, exclude_seen=False)
    assert (approximate.groupby("user_id").size() == 5).all()
    assert approximate[["user_id", "item_id", "rank"]].equals(exact[["user_id", "item_id", "rank"]])


def test_long_histories_are_ranked_exactly() -> None:
    model = _factor_model(20, 2_000, 16, seen_per_user=1_500)
    model.index_mode = "exact"
    exact = model.recommend(list(range(20)), k=10)
    model.index_mode = "ann"
    approximate = model.recommend(list(range(20)), k=10)
    assert approximate[["user_id", "item_id"]].equals(exact[["user_id", "item_id"]])


def test_graph_rows_that_come_back_short_are_completed_exactly() -> None:
    rng = np.random.default_rng(SEED)
    items = rng.standard_normal((1_000, 8)).astype(np.float32)
    queries = rng.standard_normal((4, 8)).astype(np.float32)
    index = ANNIndex(items)
    allowed = np.zeros(1_000, dtype=bool)
    allowed[rng.choice(1_000, 200, replace=False)] = True
    calls: list[np.ndarray] = []

    def exact(rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        calls.append(rows)
        scores = queries[rows] @ items.T
        scores[:, ~allowed] = -np.inf
        return top_k(scores, k)

    best, scores = index.top_k(queries, 10, allowed=allowed, seen=None, exact=exact)
    assert allowed[best].all() and best.shape == (4, 10)
    assert np.isfinite(scores).all()
    # With nothing allowed, nothing is returned and brute force is not even asked.
    calls.clear()
    none, _ = index.top_k(queries, 10, allowed=np.zeros(1_000, bool), seen=None, exact=exact)
    assert (none == -1).all() and not calls


def test_auto_mode_uses_the_index_only_for_large_catalogues(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert not wants_ann("auto", ann.ANN_MIN_ITEMS - 1)
    assert wants_ann("auto", ann.ANN_MIN_ITEMS)
    assert wants_ann("ann", 10) and not wants_ann("exact", 10**7)
    with pytest.raises(ModelError, match="index_mode"):
        wants_ann("fast", 10)
    model = _factor_model(10, 500, 8)
    model.recommend([0, 1], k=5)
    assert model._ann_index._index is None
    monkeypatch.setattr(ann, "ANN_MIN_ITEMS", 100)
    model.recommend([0, 1], k=5)
    assert model._ann_index._index is not None


def test_the_index_is_rebuilt_when_item_vectors_change() -> None:
    cache = IndexCache()
    rng = np.random.default_rng(SEED)
    first = rng.standard_normal((300, 8)).astype(np.float32)
    index = cache.get(first)
    assert cache.get(first) is index
    second = first.copy()
    assert cache.get(second) is not index
    assert cache.get(second, HNSWSettings(ef_search=64)).settings.ef_search == 64
    cache.clear()
    assert cache._index is None


def test_saving_and_loading_drops_the_index(tmp_path) -> None:
    model = _factor_model(10, 500, 8)
    model.index_mode = "ann"
    before = model.recommend([0, 1, 2], k=5)
    model.save(tmp_path / "m")
    from rekko.models import load_model

    loaded = load_model(tmp_path / "m")
    assert loaded.index_mode == "auto" and loaded._ann_index._index is None
    loaded.index_mode = "ann"
    assert loaded.recommend([0, 1, 2], k=5)["item_id"].tolist() == before["item_id"].tolist()


def test_recommend_command_takes_the_index_mode(tmp_path: Path) -> None:
    model = _factor_model(200, 3_000, 16)
    model.save(tmp_path / "model")
    runner = CliRunner()
    answers = {}
    for mode in ("exact", "ann"):
        out = tmp_path / f"{mode}.csv"
        args = ["recommend", "-m", str(tmp_path / "model"), "--all-users", "-k", "10"]
        result = runner.invoke(app, [*args, "--index", mode, "-o", str(out)])
        assert result.exit_code == 0, result.output + repr(result.exception)
        answers[mode] = pd.read_csv(out)
    exact, approximate = answers["exact"], answers["ann"]
    assert len(exact) == len(approximate) == 200 * 10
    truth = exact.groupby("user_id")["item_id"].apply(set)
    found = approximate.groupby("user_id")["item_id"].apply(set)
    recall = np.mean([len(truth[user] & found[user]) / 10 for user in truth.index])
    assert recall >= 0.95
    seen = model.seen_
    assert seen is not None
    for row in approximate.itertuples():
        assert seen[row.user_id, int(row.item_id[1:])] == 0, "a seen item came back"

    result = runner.invoke(
        app, ["recommend", "-m", str(tmp_path / "model"), "--user", "1", "--index", "fast"]
    )
    assert result.exit_code != 0 and "--index must be one of" in str(result.exception)


@pytest.mark.parametrize("name", ["als", "bpr", "neural-mf", "two-tower", "multitask"])
def test_trained_factor_models_search_the_index(name: str, small_demo: Dataset) -> None:
    if name in ("neural-mf", "two-tower", "multitask"):
        pytest.importorskip("tensorflow")
    params = {"max_epochs": 2} if name in ("two-tower", "multitask") else {}
    model = create_model(name, **params).fit(small_demo)
    assert model._factors() is not None, f"{name} does not expose its factors"
    users = list(small_demo.users.external_ids[:40])
    model.index_mode = "exact"
    exact = model.recommend(users, k=10)
    model.index_mode = "ann"
    approximate = model.recommend(users, k=10)
    assert model._ann_index._index is not None, "the index was not used"
    truth = exact.groupby("user_id")["item_id"].apply(set)
    found = approximate.groupby("user_id")["item_id"].apply(set)
    assert np.mean([len(truth[u] & found[u]) / len(truth[u]) for u in truth.index]) >= 0.95
    seen = small_demo.to_frame()
    pairs = set(zip(seen["user_id"], seen["item_id"], strict=True))
    assert not any((row.user_id, row.item_id) in pairs for row in approximate.itertuples())
