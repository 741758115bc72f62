"""rekko.workflows: train, evaluate and tune from a typed spec, with no command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from rekko.config import DataSpec
from rekko.data.dataset import Dataset
from rekko.errors import DataError
from rekko.models import load_model
from rekko.workflows import (
    EvaluateSpec,
    TrainSpec,
    TuneSpec,
    evaluate_models,
    score_recommendations,
    train,
    tune,
)


@pytest.fixture
def shop(shop_csv: Path) -> DataSpec:
    return DataSpec(
        interactions=str(shop_csv),
        user_col="visitor",
        item_col="product",
        event_col="action",
        event_weights="view=1,addtocart=3,transaction=5",
    )


@pytest.fixture
def small_csv(small_demo: Dataset, tmp_path: Path) -> DataSpec:
    path = tmp_path / "small.csv"
    small_demo.to_frame().to_csv(path, index=False)
    return DataSpec(interactions=str(path))


def test_a_spec_trains_a_model_folder_locally(
    shop: DataSpec, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[Dataset] = []
    spec = TrainSpec(shop, model="popularity", output=tmp_path / "m", params={"weighted": True})
    result = train(spec, loaded=seen.append)
    assert result.model == "popularity" and result.output == tmp_path / "m"
    assert result.seconds >= 0 and result.data is seen[0]
    assert seen[0].n_users == 4
    model = load_model(tmp_path / "m")
    assert model.name == "popularity" and model.params.weighted  # type: ignore[attr-defined]
    # Weighted popularity: p2 = 5, p3 = 5, p1 = 3 -> v4 (saw p2) gets p3, p1.
    assert model.recommend(["v4"], k=2)["item_id"].tolist() == ["p3", "p1"]
    assert capsys.readouterr() == ("", ""), "the library prints nothing"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"engine": "hadoop"}, "--engine must be local or spark, got 'hadoop'"),
        ({"master": "local[2]"}, "--master only applies with --engine spark"),
        ({"model": None}, "train needs --model and --output"),
        ({"output": None}, "train needs --model and --output"),
        ({"engine": "spark", "model": "ease"}, "--engine spark trains ALS"),
        ({"engine": "spark", "params": {"neighbours": 5}}, "unknown spark-als parameter"),
    ],
)
def test_a_bad_training_spec_is_refused_when_made(
    shop: DataSpec, tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    fields: dict[str, Any] = {"model": "popularity", "output": tmp_path / "m", **changes}
    if fields.get("engine") == "spark" and "model" not in changes:
        fields["model"] = None  # spark-als by default
    with pytest.raises(DataError, match=message):
        TrainSpec(shop, **fields)
    assert not (tmp_path / "m").exists()


def test_spark_training_takes_interactions_only(shop_csv: Path, tmp_path: Path) -> None:
    items = DataSpec(interactions=str(shop_csv), items="items.csv")
    with pytest.raises(DataError, match="interactions only"):
        TrainSpec(items, output=tmp_path / "m", engine="spark")
    spec = TrainSpec(DataSpec(), output=tmp_path / "m", engine="spark", master="local[2]")
    assert spec.model_and_output() == ("spark-als", tmp_path / "m")
    assert spec.describe() == "Training spark-als in Spark (local[2])"
    with pytest.raises(DataError, match="no data: give --interactions"):
        train(spec)


def test_evaluate_models_compares_them_on_one_split(tmp_path: Path) -> None:
    seen: list[Dataset] = []
    spec = EvaluateSpec(
        DataSpec(dataset="demo"), models={"popularity": {"weighted": True}, "random": {}}
    )
    result = evaluate_models(spec, loaded=seen.append)
    assert result.metrics["model"].tolist() == ["popularity", "random"]
    assert result.data is seen[0] and result.report is None
    popularity, random = result.metrics["ndcg@10"]
    assert popularity > random
    with pytest.raises(DataError, match="--images must be svg or png, and goes with --report"):
        EvaluateSpec(DataSpec(dataset="demo"), models={"popularity": {}}, images="svg")
    with pytest.raises(DataError, match="unknown split"):
        evaluate_models(EvaluateSpec(DataSpec(dataset="demo"), {"popularity": {}}, split="x"))


def test_score_recommendations_reads_both_files(tmp_path: Path) -> None:
    recs, truth = tmp_path / "recs.csv", tmp_path / "test.csv"
    pd.DataFrame(
        {"user_id": ["a", "a", "b"], "item_id": ["1", "2", "3"], "rank": [1, 2, 1]}
    ).to_csv(recs, index=False)
    pd.DataFrame({"user_id": ["a", "b"], "item_id": ["2", "4"]}).to_csv(truth, index=False)
    scores = score_recommendations(recs, truth, ks=(1, 2))
    assert scores["recommendations"].tolist() == ["recs.csv"]
    assert scores["hit_rate@1"].iloc[0] == 0 and scores["hit_rate@2"].iloc[0] == 0.5
    with pytest.raises(DataError, match=r"missing\.csv: file not found"):
        score_recommendations(tmp_path / "missing.csv", truth)


def test_tune_finds_parameters_and_trains_the_best_model(
    small_csv: DataSpec, tmp_path: Path
) -> None:
    outcome = tune(TuneSpec(small_csv, model="popularity", trials=2, output=tmp_path / "best"))
    assert outcome.best.model == "popularity" and len(outcome.best.trials) == 2
    assert outcome.summary is None and outcome.output == tmp_path / "best"
    params = load_model(tmp_path / "best").params.model_dump()
    assert {key: params[key] for key in outcome.best.best_params} == outcome.best.best_params
