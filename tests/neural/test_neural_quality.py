"""Quality bands on MovieLens-100K (slow: each trains a model on the full data set).

Protocol of the figures in benchmarks/neural.md: per-user random 80/20 split with seed 42,
full-catalogue ranking with training items excluded; RMSE on the official u1.base/u1.test.
The bands have an upper end too, so that a broken evaluation cannot pass by luck.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rekko.data.dataset import Dataset
from rekko.data.loaders import load_movielens_split
from rekko.data.splits import RandomSplit
from rekko.evaluation import evaluate
from rekko.models import create_model

pytestmark = pytest.mark.slow

#: (low, high) NDCG@10 of two-tower with default parameters; measured 0.42 (TFRS' quickstart:
#: 0.06-0.08, popularity: 0.21).
TWO_TOWER_NDCG = (0.38, 0.48)
#: (low, high) RMSE of the ranking model on u1; measured 0.913.
RANKING_RMSE = (0.85, 0.93)


def test_two_tower_ndcg_on_movielens(ml100k: Dataset) -> None:
    table = evaluate({"two-tower": create_model("two-tower")}, ml100k, RandomSplit(0.2, 42))
    ndcg = float(table.loc[0, "ndcg@10"])
    low, high = TWO_TOWER_NDCG
    assert low <= ndcg <= high, ndcg


def test_ranking_rmse_on_movielens_u1(datasets_dir: Path) -> None:
    train, test = load_movielens_split(datasets_dir / "ml-100k", "u1")
    model = create_model("ranking").fit(train)
    pairs = test.interactions
    predicted = model._predict(pairs["user"].to_numpy(), pairs["item"].to_numpy())
    rmse = float(np.sqrt(np.mean((predicted - pairs["value"].to_numpy()) ** 2)))
    low, high = RANKING_RMSE
    assert low <= rmse <= high, rmse
