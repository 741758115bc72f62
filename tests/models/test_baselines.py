from __future__ import annotations

import pandas as pd
import pytest

from rekko.data.dataset import Dataset
from rekko.data.splits import RandomSplit
from rekko.errors import DataError
from rekko.evaluation import evaluate
from rekko.models import create_model


def _tiny() -> Dataset:
    frame = pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "b", "c", "c", "c", "d"],
            "item_id": ["x", "y", "x", "z", "x", "y", "w", "w"],
            "timestamp": [10, 11, 12, 13, 14, 15, 1_000_000, 1_000_001],
        }
    )
    return Dataset.from_frame(frame)


def test_popularity_ranks_by_distinct_users_and_excludes_seen() -> None:
    model = create_model("popularity").fit(_tiny())
    # x: 3 users, then y and w: 2 users each (tie broken by overall count, then item order).
    assert model.recommend_query(None, k=4)["item_id"].tolist() == ["x", "y", "w", "z"]
    assert model.recommend(["d"], k=2)["item_id"].tolist() == ["x", "y"]
    assert model.recommend(["a"], k=5)["item_id"].tolist() == ["w", "z"]


def test_popularity_window_counts_only_recent_interactions() -> None:
    model = create_model("popularity", window_days=1).fit(_tiny())
    assert model.recommend_query(None, k=1)["item_id"].tolist() == ["w"]


def test_popularity_window_needs_timestamps() -> None:
    frame = pd.DataFrame({"user_id": ["a"], "item_id": ["x"]})
    with pytest.raises(DataError, match="timestamps"):
        create_model("popularity", window_days=7).fit(Dataset.from_frame(frame))


def test_random_is_deterministic_per_seed_and_differs_across_seeds() -> None:
    data = _tiny()
    first = create_model("random", seed=1).fit(data).recommend(["a", "b"], k=2)
    again = create_model("random", seed=1).fit(data).recommend(["a", "b"], k=2)
    other = create_model("random", seed=2).fit(data).recommend(["a", "b", "c", "d"], k=2)
    pd.testing.assert_frame_equal(first, again)
    assert not other.equals(
        create_model("random", seed=1).fit(data).recommend(["a", "b", "c", "d"], k=2)
    )


@pytest.mark.slow
def test_popularity_quality_band_on_movielens(ml100k: Dataset) -> None:
    table = evaluate([create_model("popularity")], ml100k, RandomSplit(0.2, seed=42))
    ndcg = float(table.loc[0, "ndcg@10"])
    assert 0.19 <= ndcg <= 0.23, ndcg
    random_table = evaluate([create_model("random")], ml100k, RandomSplit(0.2, seed=42))
    assert float(random_table.loc[0, "ndcg@10"]) < 0.05
