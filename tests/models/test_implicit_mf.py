from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from rekko.data.dataset import Dataset
from rekko.data.splits import RandomSplit
from rekko.evaluation import evaluate
from rekko.models import create_model, load_model


def blocks(held_out: tuple[str, str] | None = ("u1", "i5"), repeats: int = 3) -> Dataset:
    """Two tastes (even users: items 0-4, odd users: items 5-9), 12 users per taste."""
    rows = []
    for user in range(24):
        start = 0 if user % 2 == 0 else 5
        rows += [(f"u{user}", f"i{item}", repeats) for item in range(start, start + 5)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "value"])
    if held_out is not None:
        frame = frame[~((frame["user_id"] == held_out[0]) & (frame["item_id"] == held_out[1]))]
    return Dataset.from_frame(frame)


# -- ALS ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("confidence", ["linear", "log", "bm25"])
def test_als_puts_the_held_out_item_of_the_block_first(confidence: str) -> None:
    model = create_model(
        "als", factors=4, regularization=0.1, alpha=2.0, confidence=confidence, iterations=15
    ).fit(blocks())
    # Ties would go to i0..i4 (lower indices): i5 has to be earned.
    assert model.recommend(["u1"], k=1)["item_id"].tolist() == ["i5"]
    assert set(model.similar_items(["i6"], k=4)["similar_item_id"]) == {"i5", "i7", "i8", "i9"}


@pytest.mark.parametrize("confidence", ["linear", "log", "bm25"])
def test_confidence_follows_its_formula(confidence: str) -> None:
    data = blocks(held_out=None)
    model = create_model("als", confidence=confidence, alpha=2.0, epsilon=0.5, factors=2)
    model.fit(data)
    rows = sp.csr_matrix(np.array([[0, 1.0, 4.0, 0, 0, 0, 0, 0, 0, 0]], dtype=np.float32))
    got = model._confidence(rows).toarray()[0]
    values = np.array([1.0, 4.0])
    if confidence == "linear":
        strength = values
    elif confidence == "log":
        strength = np.log1p(values / 0.5)
    else:
        # every item has 12 users x 3, so the length norm is 1; the row has 2 of 10 items
        strength = values * 101.0 / (100.0 + values) * np.log(10 / 3)
    np.testing.assert_allclose(got[[1, 2]], 1 + 2.0 * strength, rtol=1e-5)
    assert (got[[0, 3]] == 0).all()


def test_folded_in_factors_solve_the_users_least_squares_problem() -> None:
    data = blocks()
    model = create_model("als", factors=3, regularization=0.5, alpha=4.0, iterations=5)
    model.fit(data)
    items = model.item_factors_.astype(np.float64)
    row = data.matrix[data.users.index_of("u3")]
    confidence = np.ones(data.n_items)
    preference = np.zeros(data.n_items)
    confidence[row.indices] = 1 + 4.0 * np.log1p(row.data)
    preference[row.indices] = 1.0
    # the minimiser of sum_i c_i (p_i - x . y_i)^2 + reg |x|^2, written out in full
    system = items.T @ (confidence[:, None] * items) + 0.5 * np.eye(3)
    expected = np.linalg.solve(system, items.T @ (confidence * preference))
    got = model.solve_users(model._confidence(row))[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_als_does_not_depend_on_the_number_of_threads() -> None:
    data = blocks()
    one = create_model("als", factors=8, num_threads=1).fit(data)
    two = create_model("als", factors=8, num_threads=2).fit(data)
    np.testing.assert_array_equal(one.user_factors_, two.user_factors_)
    np.testing.assert_array_equal(one.item_factors_, two.item_factors_)


def test_als_folds_in_new_events_and_new_users(tmp_path) -> None:
    model = create_model("als", factors=4, regularization=0.1, alpha=2.0, iterations=15)
    model.fit(blocks(held_out=("u1", "i9")))
    before = model.recommend(["u1"], k=3)["item_id"].tolist()
    assert before[0] == "i9"
    model.add_interactions(["u1"] * 4, ["i9", "i0", "i1", "i2"], [3, 3, 3, 3])
    after = model.recommend(["u1"], k=2)["item_id"].tolist()
    assert after != before[:2] and set(after) == {"i3", "i4"}
    model.add_interactions(["new", "new"], ["i5", "i6"])
    assert set(model.recommend(["new"], k=3)["item_id"]) == {"i7", "i8", "i9"}
    model.save(tmp_path / "als")
    loaded = load_model(tmp_path / "als")
    pd.testing.assert_frame_equal(loaded.recommend(["new"], k=5), model.recommend(["new"], k=5))


# -- BPR ------------------------------------------------------------------------------------------
def test_bpr_puts_the_held_out_item_of_the_block_first() -> None:
    model = create_model("bpr", factors=8, learning_rate=0.05, iterations=200).fit(blocks())
    assert model.recommend(["u1"], k=1)["item_id"].tolist() == ["i5"]


def test_bpr_adds_the_popularity_correction_and_is_reproducible() -> None:
    data = blocks()
    plain = create_model("bpr", factors=4, iterations=20, popularity_correction=0.0).fit(data)
    corrected = create_model("bpr", factors=4, iterations=20).fit(data)
    np.testing.assert_array_equal(plain.item_factors_, corrected.item_factors_)
    counts = np.bincount(data.interactions["item"], minlength=data.n_items)
    users = np.arange(3)
    np.testing.assert_allclose(
        corrected._score(users) - plain._score(users),
        np.broadcast_to(np.log1p(counts), (3, data.n_items)),
        rtol=1e-5,
    )


def test_bpr_does_not_fold_in_but_excludes_new_events() -> None:
    model = create_model("bpr", factors=4, iterations=20).fit(blocks())
    assert not model.abilities.fold_in
    assert model.add_interactions(["u1", "stranger"], ["i5", "i5"]) == 1
    assert "i5" not in set(model.recommend(["u1"], k=10)["item_id"])


# -- quality --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_quality_bands_on_movielens(ml100k: Dataset) -> None:
    table = evaluate(
        {"als": create_model("als"), "bpr": create_model("bpr")},
        ml100k,
        RandomSplit(0.2, seed=42),
    ).set_index("model")
    assert 0.42 <= table.loc["als", "ndcg@10"] <= 0.55, table.loc["als", "ndcg@10"]
    assert 0.41 <= table.loc["bpr", "ndcg@10"] <= 0.55, table.loc["bpr", "ndcg@10"]
