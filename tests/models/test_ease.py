from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rekko.data.dataset import Dataset
from rekko.data.splits import RandomSplit
from rekko.errors import ModelError
from rekko.evaluation import evaluate
from rekko.models import create_model
from rekko.models.ease import inverse_spd


def _frame(matrix: np.ndarray) -> pd.DataFrame:
    users, items = np.nonzero(matrix)
    return pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in users],
            "item_id": [f"i{i}" for i in items],
            "value": matrix[users, items],
        }
    )


def _closed_form(matrix: np.ndarray, l2: float, dropout: float) -> np.ndarray:
    """Steck's formula, written out with a full inverse."""
    gram = matrix.T @ matrix
    regulariser = l2 + dropout / (1 - dropout) * np.diag(gram)
    inverse = np.linalg.inv(gram + np.diag(regulariser))
    weights = np.eye(len(gram)) - inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights


@pytest.mark.parametrize(("values", "dropout"), [("binary", 0.0), ("log", 0.25), ("raw", 0.5)])
def test_weights_match_the_closed_form(values: str, dropout: float) -> None:
    rng = np.random.default_rng(0)
    matrix = ((rng.random((25, 9)) < 0.5) * rng.integers(1, 6, (25, 9))).astype(np.float64)
    matrix[np.arange(25), np.arange(25) % 9] = 2.0  # every user and every item present
    data = Dataset.from_frame(_frame(matrix))
    model = create_model(
        "ease", l2=3.0, dropout=dropout, values=values, user_weight=0.0, popularity_penalty=0.0
    ).fit(data)
    dense = data.matrix.toarray().astype(np.float64)
    transformed = {"binary": (dense > 0) * 1.0, "log": np.log1p(dense), "raw": dense}[values]
    expected = _closed_form(transformed, 3.0, dropout)
    np.testing.assert_allclose(model.weights_, expected, rtol=2e-4, atol=2e-6)
    # Scores are the user's row times B.
    user = data.users.index_of("u3")
    np.testing.assert_allclose(
        model._score(np.asarray([user]))[0], transformed[user] @ expected, rtol=2e-4, atol=1e-5
    )


def test_user_weights_and_popularity_penalty_match_their_formula() -> None:
    rng = np.random.default_rng(2)
    matrix = (rng.random((30, 8)) < 0.45).astype(np.float64)
    matrix[np.arange(30), np.arange(30) % 8] = 1.0
    data = Dataset.from_frame(_frame(matrix))
    model = create_model(
        "ease", l2=2.0, dropout=0.0, values="binary", user_weight=0.5, popularity_penalty=0.3
    ).fit(data)
    dense = (data.matrix.toarray() > 0) * 1.0
    user_degree = dense.sum(axis=1)
    # The Gram matrix weighs user u by (mean degree / degree(u)) ** 0.5 ...
    weighted = dense * np.sqrt((user_degree.mean() / user_degree) ** 0.5)[:, None]
    expected = _closed_form(weighted, 2.0, 0.0)
    # ... and the weights into item j are divided by degree(j) ** 0.3.
    expected = expected / dense.sum(axis=0)[None, :] ** 0.3
    np.testing.assert_allclose(model.weights_, expected, rtol=2e-4, atol=2e-6)
    sparse = create_model(
        "sparse-ease",
        l2=2.0,
        dropout=0.0,
        values="binary",
        user_weight=0.5,
        popularity_penalty=0.3,
        k_neighbors=7,
    ).fit(data)
    np.testing.assert_allclose(sparse.weights_.toarray(), expected, rtol=1e-3, atol=1e-5)


def test_the_held_out_item_of_the_users_block_comes_first() -> None:
    matrix = np.zeros((12, 10))
    for user in range(12):
        start = 0 if user % 2 == 0 else 5
        matrix[user, start : start + 5] = 1
    matrix[1, 5] = 0  # ties would go to i0..i4, so i5 has to be earned
    model = create_model("ease", l2=1.0).fit(Dataset.from_frame(_frame(matrix)))
    assert model.recommend(["u1"], k=1)["item_id"].tolist() == ["i5"]
    similar = model.similar_items(["i6"], k=4)
    assert set(similar["similar_item_id"]) == {"i5", "i7", "i8", "i9"}


def test_new_events_fold_in_and_are_excluded() -> None:
    matrix = np.zeros((12, 10))
    for user in range(12):
        start = 0 if user % 2 == 0 else 5
        matrix[user, start : start + 5] = 1
    model = create_model("ease", l2=1.0).fit(Dataset.from_frame(_frame(matrix)))
    model.add_interactions(["new", "new"], ["i5", "i6"])
    assert set(model.recommend(["new"], k=3)["item_id"]) == {"i7", "i8", "i9"}
    before = model.recommend(["u1"], k=3)["item_id"].tolist()
    model.add_interactions(["u1", "u1"], ["i0", "i1"])
    after = model.recommend(["u1"], k=3)["item_id"].tolist()
    assert after != before and set(after) == {"i2", "i3", "i4"}


def test_inverse_falls_back_to_double_precision_and_rejects_indefinite() -> None:
    rng = np.random.default_rng(1)
    factor = rng.normal(size=(6, 6))
    spd = factor @ factor.T + 1e-9 * np.eye(6)
    np.testing.assert_allclose(inverse_spd(spd) @ spd, np.eye(6), atol=1e-3)
    with pytest.raises(ModelError, match="positive definite"):
        inverse_spd(-np.eye(4))


@pytest.mark.slow
def test_quality_band_on_movielens(ml100k: Dataset) -> None:
    table = evaluate([create_model("ease")], ml100k, RandomSplit(0.2, seed=42))
    ndcg = float(table.loc[0, "ndcg@10"])
    assert 0.445 <= ndcg <= 0.55, ndcg


def test_sparse_ease_with_every_item_as_neighbour_is_ease() -> None:
    rng = np.random.default_rng(4)
    matrix = ((rng.random((40, 15)) < 0.4) * rng.integers(1, 6, (40, 15))).astype(np.float64)
    matrix[np.arange(40), np.arange(40) % 15] = 2.0
    data = Dataset.from_frame(_frame(matrix))
    dense = create_model("ease", l2=3.0, dropout=0.2).fit(data)
    sparse = create_model("sparse-ease", l2=3.0, dropout=0.2, k_neighbors=14).fit(data)
    np.testing.assert_allclose(sparse.weights_.toarray(), dense.weights_, rtol=1e-3, atol=1e-5)


def test_sparse_ease_keeps_k_weights_per_item_and_ranks_the_block_first() -> None:
    matrix = np.zeros((12, 10))
    for user in range(12):
        start = 0 if user % 2 == 0 else 5
        matrix[user, start : start + 5] = 1
    matrix[1, 5] = 0
    model = create_model("sparse-ease", l2=1.0, k_neighbors=3).fit(
        Dataset.from_frame(_frame(matrix))
    )
    assert (np.diff(model.weights_.tocsc().indptr) <= 3).all()
    assert model.recommend(["u1"], k=1)["item_id"].tolist() == ["i5"]
    model.add_interactions(["new", "new"], ["i5", "i6"])
    assert set(model.recommend(["new"], k=3)["item_id"]) == {"i7", "i8", "i9"}


@pytest.mark.slow
def test_sparse_ease_quality_band_on_movielens(ml100k: Dataset) -> None:
    table = evaluate([create_model("sparse-ease")], ml100k, RandomSplit(0.2, seed=42))
    ndcg = float(table.loc[0, "ndcg@10"])
    assert 0.44 <= ndcg <= 0.55, ndcg
