from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from rekko.data.dataset import Dataset
from rekko.data.splits import RandomSplit
from rekko.evaluation import evaluate
from rekko.models import create_model, load_model, neighbors
from rekko.models.neighbors import idf_weights, top_k_cosine, weigh


def blocks(
    held_out: tuple[str, str] = ("u1", "i5"), n_users: int = 12, n_items: int = 10
) -> Dataset:
    """Two tastes: even users take items 0-4, odd users items 5-9; one pair is held out.

    Held-out items of the second block are the test: ties would go to the lower indices of
    the first block, so the model has to earn the answer.
    """
    rows = []
    for user in range(n_users):
        first = 0 if user % 2 == 0 else n_items // 2
        for item in range(first, first + n_items // 2):
            rows.append((f"u{user}", f"i{item}"))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id"])
    frame = frame[~((frame["user_id"] == held_out[0]) & (frame["item_id"] == held_out[1]))]
    return Dataset.from_frame(frame)


@pytest.mark.parametrize("name", ["item-knn", "user-knn"])
@pytest.mark.parametrize("weighting", ["none", "tfidf", "bm25"])
def test_the_held_out_item_of_the_users_block_comes_first(name: str, weighting: str) -> None:
    model = create_model(name, weighting=weighting, k_neighbors=5).fit(blocks())
    assert model.recommend(["u1"], k=1)["item_id"].tolist() == ["i5"]


def test_similarity_is_the_shrunk_cosine() -> None:
    rng = np.random.default_rng(0)
    dense = (rng.random((30, 8)) < 0.4) * rng.integers(1, 5, (30, 8))
    vectors = sp.csr_matrix(dense.T.astype(np.float32))
    got = top_k_cosine(vectors, k=7, shrinkage=2.0).toarray()
    norms = np.linalg.norm(dense, axis=0)
    expected = (dense.T @ dense) / (np.outer(norms, norms) + 2.0)
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(got, np.maximum(expected, 0), rtol=1e-5, atol=1e-7)


def test_only_the_k_most_similar_neighbours_are_kept_per_row() -> None:
    rng = np.random.default_rng(1)
    vectors = sp.csr_matrix(rng.random((20, 15)).astype(np.float32))
    full = top_k_cosine(vectors, k=19, shrinkage=0.0).toarray()
    pruned = top_k_cosine(vectors, k=3, shrinkage=0.0).toarray()
    assert (np.count_nonzero(pruned, axis=1) == 3).all()
    for row in range(20):
        kept = np.flatnonzero(pruned[row])
        assert set(kept) == set(np.argsort(-full[row])[:3])
        np.testing.assert_allclose(pruned[row, kept], full[row, kept])


def test_blockwise_similarity_equals_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    vectors = sp.random(40, 25, density=0.2, random_state=3, format="csr", dtype=np.float32)
    whole = top_k_cosine(vectors, k=5, shrinkage=1.0)
    monkeypatch.setattr(neighbors, "BLOCK_CELLS", 7 * 40)
    monkeypatch.setattr(neighbors, "DENSE_CELLS", 0)
    blocked = top_k_cosine(vectors, k=5, shrinkage=1.0)
    np.testing.assert_allclose(blocked.toarray(), whole.toarray(), rtol=1e-6)


def test_bm25_and_tfidf_weights_follow_their_formulas() -> None:
    matrix = sp.csr_matrix(np.array([[1.0, 0, 3], [2, 2, 0], [0, 0, 4]], dtype=np.float32))
    idf = idf_weights(matrix, "columns")  # items are documents, users terms
    np.testing.assert_allclose(idf, np.maximum(np.log(3 / (1 + np.array([2, 2, 1]))), 0), rtol=1e-6)
    tfidf = weigh(matrix, "tfidf", "columns", idf, 1.0).toarray()
    np.testing.assert_allclose(tfidf, np.sqrt(matrix.toarray()) * idf[:, None], rtol=1e-6)
    lengths = matrix.toarray().sum(axis=0)
    average = lengths.mean()
    bm25 = weigh(matrix, "bm25", "columns", idf, average, k1=1.2, b=0.75).toarray()
    values = matrix.toarray()
    norm = 0.25 + 0.75 * lengths / average
    expected = np.where(values > 0, values * 2.2 / (1.2 * norm[None, :] + values), 0) * idf[:, None]
    np.testing.assert_allclose(bm25, expected, rtol=1e-5)


@pytest.mark.parametrize("name", ["item-knn", "user-knn"])
def test_new_events_fold_in_and_are_excluded(name: str) -> None:
    data = blocks(held_out=("u1", "i9"))
    model = create_model(name, k_neighbors=5).fit(data)
    before = model.recommend(["u1"], k=3)["item_id"].tolist()
    assert before[0] == "i9"
    # u1 now also takes the other block: its recommendations change and exclude what it took.
    model.add_interactions(["u1"] * 3, ["i9", "i0", "i1"])
    after = model.recommend(["u1"], k=3)["item_id"].tolist()
    assert after != before
    assert not {"i9", "i0", "i1"} & set(after)
    assert set(after) == {"i2", "i3", "i4"}
    # A new user with items of the odd block gets the rest of that block.
    model.add_interactions(["new", "new"], ["i5", "i6"])
    assert set(model.recommend(["new"], k=3)["item_id"]) == {"i7", "i8", "i9"}


@pytest.mark.parametrize("name", ["item-knn", "user-knn"])
def test_save_and_load_keep_fold_in_working(name: str, tmp_path) -> None:
    model = create_model(name, k_neighbors=5).fit(blocks())
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    loaded.add_interactions(["new", "new"], ["i5", "i6"])
    model.add_interactions(["new", "new"], ["i5", "i6"])
    pd.testing.assert_frame_equal(loaded.recommend(["new"], k=4), model.recommend(["new"], k=4))


def test_item_knn_similar_items_stay_in_the_block() -> None:
    model = create_model("item-knn", k_neighbors=4).fit(blocks())
    similar = model.similar_items(["i6"], k=4)
    assert set(similar["similar_item_id"]) == {"i5", "i7", "i8", "i9"}


@pytest.mark.slow
def test_quality_bands_on_movielens(ml100k: Dataset) -> None:
    table = evaluate(
        {"item-knn": create_model("item-knn"), "user-knn": create_model("user-knn")},
        ml100k,
        RandomSplit(0.2, seed=42),
    ).set_index("model")
    assert 0.39 <= table.loc["item-knn", "ndcg@10"] <= 0.55, table.loc["item-knn", "ndcg@10"]
    assert 0.385 <= table.loc["user-knn", "ndcg@10"] <= 0.55, table.loc["user-knn", "ndcg@10"]


def test_similarities_do_not_depend_on_threads_or_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    vectors = sp.random(300, 120, density=0.05, random_state=rng, dtype=np.float32).tocsr()
    parallel = neighbors.top_k_cosine(vectors, 10, shrinkage=2.0)
    monkeypatch.setattr(neighbors, "MAX_THREADS", 1)
    monkeypatch.setattr(neighbors, "BLOCK_CELLS", 300 * 7)  # many small blocks, one thread
    serial = neighbors.top_k_cosine(vectors, 10, shrinkage=2.0)
    assert (parallel != serial).nnz == 0
    assert parallel.shape == (300, 300) and parallel.diagonal().max() == 0
