from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from rekko.data.dataset import Dataset
from rekko.models import create_model, load_model
from rekko.models.explicit_mf import baseline_biases, pearson_baseline


def ratings_frame(matrix: np.ndarray) -> pd.DataFrame:
    users, items = np.nonzero(matrix)
    return pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in users],
            "item_id": [f"i{i}" for i in items],
            "rating": matrix[users, items],
        }
    )


def random_ratings(n_users: int = 30, n_items: int = 15, density: float = 0.5, seed: int = 0):
    rng = np.random.default_rng(seed)
    matrix = np.where(
        rng.random((n_users, n_items)) < density, rng.integers(1, 6, (n_users, n_items)), 0
    )
    matrix[np.arange(n_users), np.arange(n_users) % n_items] = 3  # everyone present
    data = Dataset.from_frame(ratings_frame(matrix.astype(float)))
    return data, data.matrix.toarray().astype(np.float64)


# -- knn-baseline against a plain, loop-by-loop reference -------------------------------------
def reference_biases(dense: np.ndarray, epochs: int, reg_u: float, reg_i: float):
    rated = dense > 0
    mean = dense[rated].mean()
    user_bias = np.zeros(dense.shape[0])
    item_bias = np.zeros(dense.shape[1])
    for _ in range(epochs):
        for i in range(dense.shape[1]):
            users = np.flatnonzero(rated[:, i])
            item_bias[i] = (dense[users, i] - mean - user_bias[users]).sum() / (reg_i + len(users))
        for u in range(dense.shape[0]):
            items = np.flatnonzero(rated[u])
            user_bias[u] = (dense[u, items] - mean - item_bias[items]).sum() / (reg_u + len(items))
    return mean, user_bias, item_bias


def reference_similarity(residual: np.ndarray, rated: np.ndarray, shrinkage: float) -> np.ndarray:
    n = residual.shape[1]
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            common = rated[:, i] & rated[:, j]
            if i == j or not common.any():
                continue
            a, b = residual[common, i], residual[common, j]
            denominator = np.sqrt((a**2).sum() * (b**2).sum())
            if denominator > 0:
                support = common.sum() - 1
                out[i, j] = (a * b).sum() / denominator * support / (support + shrinkage)
    return out


def test_baselines_and_similarity_match_the_reference() -> None:
    _, dense = random_ratings()
    mean, user_bias, item_bias = baseline_biases(sp.csr_matrix(dense), 10, 15.0, 10.0)
    expected = reference_biases(dense, 10, 15.0, 10.0)
    assert mean == pytest.approx(expected[0])
    np.testing.assert_allclose(user_bias, expected[1], atol=1e-10)
    np.testing.assert_allclose(item_bias, expected[2], atol=1e-10)
    rated = dense > 0
    residual = np.where(rated, dense - mean - user_bias[:, None] - item_bias[None, :], 0.0)
    got = pearson_baseline(sp.csr_matrix(np.where(rated, residual, 0.0)), 5.0)
    # a residual of exactly 0 would drop out of a sparse matrix; none is 0 here
    assert np.count_nonzero(residual) == rated.sum()
    np.testing.assert_allclose(got, reference_similarity(residual, rated, 5.0), atol=1e-6)


def test_knn_baseline_predictions_match_the_reference() -> None:
    data, dense = random_ratings(seed=1)
    k = 3
    model = create_model("knn-baseline", k_neighbors=k, shrinkage=5.0).fit(data)
    rated = dense > 0
    mean, user_bias, item_bias = model.mean_, model.user_bias_, model.item_bias_
    similarity = model.similarity_.astype(np.float64)
    users, items = np.meshgrid(np.arange(data.n_users), np.arange(data.n_items), indexing="ij")
    users, items = users.ravel(), items.ravel()
    expected = []
    for u, i in zip(users, items, strict=True):
        neighbours = np.flatnonzero(rated[u])
        best = neighbours[np.argsort(-similarity[i, neighbours], kind="stable")[:k]]
        best = best[similarity[i, best] > 0]
        estimate = mean + user_bias[u] + item_bias[i]
        if len(best):
            deviation = dense[u, best] - mean - user_bias[u] - item_bias[best]
            estimate += (similarity[i, best] * deviation).sum() / similarity[i, best].sum()
        expected.append(estimate)
    expected_array = np.asarray(expected)
    np.testing.assert_allclose(
        model._score(np.arange(data.n_users)).ravel(), expected_array, rtol=1e-5
    )
    np.testing.assert_allclose(
        model._predict(users, items), np.clip(expected_array, 1, 5), rtol=1e-5
    )


# -- biased-mf ------------------------------------------------------------------------------------
def planted(seed: int = 0) -> tuple[Dataset, pd.DataFrame]:
    """Ratings ``3 + b_u + b_i + p_u . q_i`` (rank 2) plus small noise; 30% held out."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 80, 40
    truth = (
        3.0
        + rng.normal(0, 0.4, (n_users, 1))
        + rng.normal(0, 0.4, (1, n_items))
        + rng.normal(0, 0.6, (n_users, 2)) @ rng.normal(0, 0.6, (2, n_items))
    )
    observed = truth + rng.normal(0, 0.1, truth.shape)
    frame = ratings_frame(np.clip(observed, 0.01, None))
    held_out = rng.random(len(frame)) < 0.3
    return Dataset.from_frame(frame[~held_out]), frame[held_out]


@pytest.mark.parametrize("method", ["mcmc", "als"])
def test_biased_mf_recovers_planted_structure(method: str) -> None:
    train, test = planted()
    params = {"regularization": 0.02} if method == "als" else {}
    model = create_model("biased-mf", factors=4, method=method, **params).fit(train)
    predicted = model.predict(test["user_id"].tolist(), test["item_id"].tolist())
    error = float(np.sqrt(np.mean((predicted - test["rating"].to_numpy()) ** 2)))
    mean, user_bias, item_bias = baseline_biases(train.matrix, 10, 15.0, 10.0)
    users = train.users.to_index(test["user_id"])
    items = train.items.to_index(test["item_id"])
    baseline = mean + user_bias[users] + item_bias[items]
    baseline_error = float(np.sqrt(np.mean((baseline - test["rating"].to_numpy()) ** 2)))
    assert error < 0.25 < baseline_error, (error, baseline_error)


@pytest.mark.parametrize("name", ["biased-mf", "knn-baseline"])
def test_unknown_users_and_items_get_baselines_and_predictions_are_clipped(name: str) -> None:
    data, _ = random_ratings()
    model = create_model(name).fit(data)
    mean = model.mean_
    if name == "biased-mf":
        user_bias, item_bias = model.user_factors_[:, 0], model.item_factors_[:, 0]
    else:
        user_bias, item_bias = model.user_bias_, model.item_bias_
    user, item = data.users.index_of("u2"), data.items.index_of("i3")
    got = model.predict(["u2", "nobody", "nobody"], ["no-item", "i3", "no-item"])
    expected = np.clip([mean + user_bias[user], mean + item_bias[item], mean], 1, 5)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    everything = model.predict(
        list(data.users.to_external(np.repeat(np.arange(data.n_users), data.n_items))),
        list(data.items.to_external(np.tile(np.arange(data.n_items), data.n_users))),
    )
    assert everything.min() >= 1 and everything.max() <= 5


@pytest.mark.parametrize("name", ["biased-mf", "knn-baseline"])
def test_new_ratings_fold_in(name: str, tmp_path: Path) -> None:
    data, _ = random_ratings()
    model = create_model(name).fit(data)
    items = ["i0", "i1", "i2", "i3"]
    model.add_interactions(["fan"] * 4, items, [5, 5, 5, 5])
    model.add_interactions(["critic"] * 4, items, [1, 1, 1, 1])
    fan = model.predict(["fan"] * 3, ["i5", "i6", "i7"])
    critic = model.predict(["critic"] * 3, ["i5", "i6", "i7"])
    assert (fan > critic).all()
    assert not set(items) & set(model.recommend(["fan"], k=5)["item_id"])
    model.save(tmp_path / name)
    np.testing.assert_allclose(load_model(tmp_path / name).predict(["fan"], ["i5"]), fan[:1])


@pytest.mark.parametrize("name", ["biased-mf", "knn-baseline"])
def test_implicit_data_is_read_as_ratings(name: str, small_demo: Dataset) -> None:
    model = create_model(name).fit(small_demo)
    user = small_demo.users.external_ids[0]
    scores = model.score(user, list(small_demo.items.external_ids[:5]))
    assert np.isfinite(scores).all()
    assert len(model.recommend([user], k=5)) == 5


@pytest.mark.slow
def test_rmse_bands_on_movielens_u1(datasets_dir: Path) -> None:
    from rekko.data.loaders import load_movielens_split

    train, test = load_movielens_split(datasets_dir / "ml-100k", "u1")
    pairs = test.interactions
    for name, low, high in (("biased-mf", 0.85, 0.915), ("knn-baseline", 0.88, 0.945)):
        model = create_model(name).fit(train)
        predicted = model.predict(
            list(train.users.to_external(pairs["user"])),
            list(train.items.to_external(pairs["item"])),
        )
        rmse = float(np.sqrt(np.mean((predicted - pairs["value"].to_numpy()) ** 2)))
        assert low <= rmse <= high, (name, rmse)
