from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rekko.data.dataset import Dataset
from rekko.data.splits import RandomSplit
from rekko.evaluation import evaluate
from rekko.models import create_model, graph


def _frame(matrix: np.ndarray) -> pd.DataFrame:
    users, items = np.nonzero(matrix)
    return pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in users],
            "item_id": [f"i{i}" for i in items],
            "value": matrix[users, items],
        }
    )


def _blocks() -> np.ndarray:
    """Two blocks of users and items; u1 lacks i5, which its block should give it first."""
    matrix = np.zeros((12, 10))
    for user in range(12):
        start = 0 if user % 2 == 0 else 5
        matrix[user, start : start + 5] = 1
    matrix[1, 5] = 0
    return matrix


def _dense_walks(binary: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """RP3beta written out: (P_iu^alpha)(P_ui^alpha) / degree^beta, zero diagonal."""
    user_to_item = (binary / binary.sum(axis=1, keepdims=True)) ** alpha
    item_to_user = (binary.T / binary.T.sum(axis=1, keepdims=True)) ** alpha
    walks = item_to_user @ user_to_item / binary.sum(axis=0)[None, :] ** beta
    np.fill_diagonal(walks, 0.0)
    return walks


def test_walks_match_the_formula_and_keep_each_columns_strongest() -> None:
    rng = np.random.default_rng(0)
    matrix = ((rng.random((30, 12)) < 0.4) * rng.integers(1, 6, (30, 12))).astype(np.float64)
    matrix[np.arange(30), np.arange(30) % 12] = 3.0  # every user and every item present
    data = Dataset.from_frame(_frame(matrix))
    binary = (data.matrix.toarray() > 0).astype(np.float64)
    expected = _dense_walks(binary, alpha=0.7, beta=0.4)
    full = create_model("rp3beta", alpha=0.7, beta=0.4, k_neighbors=11).fit(data)
    np.testing.assert_allclose(full.similarity_.toarray(), expected, rtol=1e-5, atol=1e-7)
    pruned = create_model("rp3beta", alpha=0.7, beta=0.4, k_neighbors=3).fit(data)
    kept = pruned.similarity_.toarray()
    assert ((kept > 0).sum(axis=0) <= 3).all()
    for column in range(12):
        strongest = np.sort(expected[:, column])[-3:]
        np.testing.assert_allclose(np.sort(kept[:, column])[-3:], strongest, rtol=1e-5)
    # Scores are the user's (log) row times W.
    user = data.users.index_of("u4")
    row = np.log1p(data.matrix.toarray()[user])
    np.testing.assert_allclose(
        pruned._score(np.asarray([user]))[0], row @ kept, rtol=1e-5, atol=1e-7
    )


def test_blocks_of_items_give_the_same_walks(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    matrix = ((rng.random((40, 25)) < 0.3) * 1.0).astype(np.float64)
    matrix[np.arange(40), np.arange(40) % 25] = 1.0
    data = Dataset.from_frame(_frame(matrix))
    whole = graph.rp3beta_walks(data.matrix, 0.8, 0.3, 5)
    monkeypatch.setattr(graph, "BLOCK_CELLS", 25 * 3)
    blocked = graph.rp3beta_walks(data.matrix, 0.8, 0.3, 5)
    assert (whole != blocked).nnz == 0


def test_the_held_out_item_of_the_users_block_comes_first() -> None:
    model = create_model("rp3beta").fit(Dataset.from_frame(_frame(_blocks())))
    assert model.recommend(["u1"], k=1)["item_id"].tolist() == ["i5"]
    similar = model.similar_items(["i6"], k=4)
    assert set(similar["similar_item_id"]) == {"i5", "i7", "i8", "i9"}


def test_new_users_and_events_fold_in() -> None:
    model = create_model("rp3beta").fit(Dataset.from_frame(_frame(_blocks())))
    model.add_interactions(["new", "new"], ["i5", "i6"])
    assert set(model.recommend(["new"], k=3)["item_id"]) == {"i7", "i8", "i9"}


@pytest.mark.slow
def test_quality_band_on_movielens(ml100k: Dataset) -> None:
    table = evaluate([create_model("rp3beta")], ml100k, RandomSplit(0.2, seed=42))
    ndcg = float(table.loc[0, "ndcg@10"])
    assert 0.40 <= ndcg <= 0.55, ndcg
