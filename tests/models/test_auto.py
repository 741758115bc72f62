from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rekko.config import DataSpec
from rekko.data.dataset import Dataset
from rekko.data.splits import RandomSplit
from rekko.errors import ModelError
from rekko.evaluation import evaluate, evaluate_recommendations
from rekko.models import create_model, load_model


def _report(model: object) -> dict:
    return model.metadata_["auto"]  # type: ignore[attr-defined]


def test_inner_scores_are_those_of_evaluate_on_the_same_split(small_demo: Dataset) -> None:
    model = create_model("auto", candidates=["ease", "item-knn"]).fit(small_demo)
    report = _report(model)
    table = evaluate(
        [create_model("ease"), create_model("item-knn")], small_demo, RandomSplit(0.2, seed=42)
    )
    for entry, (_, row) in zip(report["tried"], table.iterrows(), strict=True):
        assert entry["status"] == "fitted"
        assert entry["inner_ndcg@10"] == pytest.approx(float(row["ndcg@10"]), abs=1e-4)
    best = max(float(table.loc[i, "ndcg@10"]) for i in table.index)
    assert report["inner_ndcg@10"] >= best - 1e-4  # the blend starts from the best family
    assert report["chosen"] == [name for name, w in report["weights"].items() if w > 0]
    assert report["validation"]["users"] > 0 and report["validation"]["events"] > 0


def test_saved_auto_loads_as_the_blend_it_chose(small_demo: Dataset, tmp_path: Path) -> None:
    model = create_model("auto", candidates=["ease", "als", "popularity"]).fit(small_demo)
    model.save(tmp_path / "auto")
    meta = json.loads((tmp_path / "auto" / "model.json").read_text())
    assert meta["metadata"]["auto"]["chosen"] == _report(model)["chosen"]
    loaded = load_model(tmp_path / "auto")
    assert list(loaded.components_) == _report(model)["chosen"]  # type: ignore[attr-defined]
    users = list(small_demo.users.external_ids[:12])
    pd.testing.assert_frame_equal(loaded.recommend(users, k=6), model.recommend(users, k=6))


def test_a_blend_of_one_chosen_family_ranks_like_that_family(small_demo: Dataset) -> None:
    model = create_model("auto", candidates=["ease"]).fit(small_demo)
    assert _report(model)["weights"] == {"ease": 1.0}
    ease = create_model("ease").fit(small_demo)
    users = list(small_demo.users.external_ids[:10])
    pd.testing.assert_frame_equal(
        model.recommend(users, k=5)[["user_id", "item_id"]],
        ease.recommend(users, k=5)[["user_id", "item_id"]],
    )


def test_a_spent_budget_stops_the_search_after_the_first_family(small_demo: Dataset) -> None:
    model = create_model("auto", candidates=["item-knn", "ease", "als"], time_budget=1e-6)
    report = _report(model.fit(small_demo))
    assert report["tried"][0]["status"] == "fitted"
    assert all(entry["status"].startswith("skipped") for entry in report["tried"][1:])
    assert report["chosen"] == ["item-knn"]


def test_large_catalogues_under_a_small_budget_get_sparse_ease() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items = 400, 6000
    users = rng.integers(0, n_users, 20000)
    items = rng.integers(0, n_items, 20000)
    frame = pd.DataFrame({"user_id": users.astype(str), "item_id": items.astype(str)})
    data = Dataset.from_frame(frame)
    assert data.n_items > 4096  # below that, dense EASE is always cheap enough
    report = _report(create_model("auto", time_budget=0.01).fit(data))
    assert report["tried"][0]["model"] == "sparse-ease"


def test_parameter_errors_name_the_problem() -> None:
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        create_model("auto", candidates=["ease", "nope"])
    with pytest.raises(ModelError, match="cannot be a candidate"):
        create_model("auto", candidates=["hybrid"])
    with pytest.raises(ModelError, match="not in candidates"):
        create_model("auto", candidates=["ease"], candidate_params={"als": {"factors": 8}})
    with pytest.raises(ModelError, match="repeat"):
        create_model("auto", candidates=["ease", "ease"])
    with pytest.raises(ModelError, match=r"auto: component 'ease'"):
        create_model("auto", candidate_params={"ease": {"l2": -1}})


@pytest.mark.slow
def test_auto_beats_every_family_on_the_peers_random_split(bench_dir: Path) -> None:
    """The quality band on ``ml100k-random`` (the peers' best, RecTools EASE, has 0.4356)."""
    split = bench_dir / "ml100k" / "ml100k-random"
    train = DataSpec(interactions=str(split / "train.csv")).load()
    test = pd.read_csv(split / "test.csv", dtype=str)
    users = list(test["user_id"].drop_duplicates())
    model = create_model("auto").fit(train)
    ndcg = float(evaluate_recommendations(model.recommend(users, k=10), test)["ndcg@10"])
    ease = create_model("ease").fit(train)
    alone = float(evaluate_recommendations(ease.recommend(users, k=10), test)["ndcg@10"])
    assert 0.445 <= ndcg <= 0.47, ndcg
    assert ndcg >= alone + 0.003, (ndcg, alone)
    assert len(_report(model)["chosen"]) >= 2
