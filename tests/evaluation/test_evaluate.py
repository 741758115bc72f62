from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rekko.data.dataset import Dataset
from rekko.data.splits import LeaveLastOut, RandomSplit, TemporalSplit
from rekko.evaluation import Protocol, evaluate, evaluate_recommendations
from rekko.models import create_model


def test_evaluate_compares_models_on_one_split(small_demo: Dataset) -> None:
    table = evaluate(
        [create_model("popularity"), create_model("random"), create_model("random", seed=5)],
        small_demo,
        RandomSplit(0.2, seed=1),
        protocol=Protocol(ks=(5, 10)),
    )
    assert table["model"].tolist() == ["popularity", "random", "random-2"]
    for column in (
        "ndcg@5",
        "ndcg@10",
        "recall@10",
        "map@10",
        "mrr@10",
        "hit_rate@10",
        "precision@10",
        "top_k_accuracy@10",
        "coverage@10",
        "novelty@10",
        "diversity@10",
        "popularity@10",
        "fit_s",
        "recommend_s",
    ):
        assert column in table.columns, column
    assert (table["users"] == small_demo.n_users).all()
    assert table.loc[0, "ndcg@10"] > table.loc[1, "ndcg@10"]
    assert table.loc[0, "coverage@10"] < table.loc[1, "coverage@10"]
    assert (table["recall@10"] >= table["recall@5"] - 1e-12).all()


def test_temporal_split_counts_cold_users(demo: Dataset) -> None:
    table = evaluate([create_model("popularity")], demo, TemporalSplit(0.3))
    assert table.loc[0, "cold_users"] >= 0
    assert table.loc[0, "users"] + table.loc[0, "cold_users"] > 0
    loo = evaluate([create_model("popularity")], demo, LeaveLastOut(1))
    assert loo.loc[0, "users"] == demo.n_users


def test_relevance_threshold_keeps_only_high_ratings() -> None:
    frame = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2, 2, 3, 3],
            "item_id": [10, 11, 12, 10, 11, 13, 10, 12],
            "rating": [5, 1, 4, 4, 2, 5, 5, 1],
        }
    )
    data = Dataset.from_frame(frame)
    train = data.subset(np.array([True, False, False, True, False, False, True, True]))
    test = data.subset(np.array([False, True, True, False, True, True, False, False]))
    every = evaluate([create_model("popularity")], train=train, test=test)
    high = evaluate(
        [create_model("popularity")],
        train=train,
        test=test,
        protocol=Protocol(relevance_threshold=4),
    )
    assert every.loc[0, "users"] == 2
    assert high.loc[0, "users"] == 2  # user 1 keeps item 12 (4 stars), user 2 keeps 13 (5 stars)
    assert high.loc[0, "ndcg@10"] != every.loc[0, "ndcg@10"]


def test_evaluate_recommendations_by_hand() -> None:
    recs = pd.DataFrame(
        {"user_id": ["a", "a", "a", "b"], "item_id": [1, 2, 3, 9], "rank": [1, 2, 3, 1]}
    )
    truth = pd.DataFrame({"user_id": ["a", "a", "b", "c"], "item_id": ["2", "7", "5", "1"]})
    row = evaluate_recommendations(recs, truth, protocol=Protocol(ks=(3,)))
    # a: one hit at rank 2 of 2 relevant; b: no hit; c: no recommendations at all.
    assert row["users"] == 3
    assert row["recall@3"] == pytest.approx((1 / 2) / 3)
    assert row["precision@3"] == pytest.approx((1 / 3) / 3)
    idcg = 1 + 1 / np.log2(3)
    assert row["ndcg@3"] == pytest.approx((1 / np.log2(3)) / idcg / 3)
    assert row["mrr@3"] == pytest.approx(0.5 / 3)


def test_unknown_metric_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        Protocol(metrics=("ndcg", "auc"))
