"""rekko.workflows: the work of every command that reads data or a model, with no command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from rekko.config import DataSpec
from rekko.constraints import parse_constraints
from rekko.data.dataset import Dataset
from rekko.data.demo import load_demo
from rekko.errors import DataError, ModelError, UnknownIdError
from rekko.models import create_model, load_model
from rekko.workflows import (
    EvaluateSpec,
    QuerySpec,
    RecommendSpec,
    TrainSpec,
    TuneSpec,
    demo,
    evaluate_models,
    explore,
    predict,
    query,
    recommend,
    score_recommendations,
    similar,
    split,
    summarize,
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


def test_tune_never_sees_the_test_part_evaluate_holds_out(
    small_csv: DataSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rekko.tuning
    from rekko.data.splits import RandomSplit

    searched: list[Dataset] = []
    real_tune = rekko.tuning.tune

    def spy(model: str, train: Dataset, **options: Any) -> Any:
        searched.append(train)
        return real_tune(model, train, **options)

    monkeypatch.setattr(rekko.tuning, "tune", spy)
    outcome = tune(TuneSpec(small_csv, model="popularity", trials=1, seed=5))
    # evaluate's split with the same seed: its test pairs are not in what the search saw
    _, test = RandomSplit(0.2, seed=5).split(outcome.data)
    pairs = set(zip(*searched[0].matrix.nonzero(), strict=True))
    held_out = set(zip(*test.matrix.nonzero(), strict=True))
    assert held_out and not pairs & held_out
    assert len(pairs) + len(held_out) == outcome.data.matrix.nnz


def test_evaluate_warns_when_a_tuned_folder_saw_its_test_part(
    small_csv: DataSpec, tmp_path: Path
) -> None:
    folder = tmp_path / "tuned"
    tune(TuneSpec(small_csv, model="popularity", trials=1, seed=3, output=folder))
    tuning = load_model(folder).metadata_["tuning"]
    assert tuning["held_out"] == {"split": "random", "test_fraction": 0.2, "seed": 3}
    same = evaluate_models(EvaluateSpec(small_csv, {}, seed=3, tuned=[folder]))
    assert same.metrics["model"].tolist() == ["tuned (tuned popularity)"]
    assert same.warnings == ()
    other = evaluate_models(EvaluateSpec(small_csv, {"random": {}}, seed=42, tuned=[folder]))
    assert len(other.warnings) == 1
    assert "optimistic" in other.warnings[0] and "seed 3" in other.warnings[0]
    # a folder trained on other data says nothing about this split
    create_model("popularity").fit(load_demo(n_users=30, n_items=20, seed=1)).save(folder)
    assert evaluate_models(EvaluateSpec(small_csv, {}, tuned=[folder])).warnings == ()


@pytest.fixture
def als_folder(small_demo: Dataset, tmp_path: Path) -> Path:
    """An ALS model trained on the small demo shop, saved to a folder."""
    return (
        create_model("als", factors=8, iterations=3, seed=42).fit(small_demo).save(tmp_path / "als")
    )


def test_a_spec_recommends_from_a_model_folder(small_demo: Dataset, als_folder: Path) -> None:
    model = load_model(als_folder)
    users = [str(u) for u in small_demo.users.external_ids[:5]]
    recs = recommend(RecommendSpec(als_folder, users=users, k=4, index="exact"))
    assert recs is not None
    assert recs.equals(model.recommend(users, 4))
    assert list(recs.columns) == ["user_id", "item_id", "rank", "score"]
    seen = small_demo.to_frame()
    seen_pairs = set(zip(seen["user_id"].astype(str), seen["item_id"].astype(str), strict=True))
    recommended = zip(recs["user_id"].astype(str), recs["item_id"].astype(str), strict=True)
    assert not seen_pairs & set(recommended), "a seen item was recommended"

    everyone = recommend(RecommendSpec(als_folder, all_users=True, k=2))
    assert everyone is not None
    assert everyone.equals(model.recommend(list(small_demo.users.external_ids), 2))

    cheap = parse_constraints({"price": {"max": 20}})
    kept = recommend(RecommendSpec(als_folder, users=users, k=3, filters=cheap))
    assert kept is not None and kept.equals(model.recommend(users, 3, filters=cheap))
    assert small_demo.item_features is not None
    prices = small_demo.item_features.frame["price"].to_numpy()
    assert (prices[small_demo.items.to_index(kept["item_id"])] <= 20).all()

    again = recommend(RecommendSpec(als_folder, users=users[:1], k=3, exclude_seen=False))
    assert again is not None
    assert again.equals(model.recommend(users[:1], 3, exclude_seen=False))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, r"give either --user ID \(one or more\) or --all-users"),
        ({"users": ["u1"], "all_users": True}, "give either --user ID"),
        ({"all_users": True, "k": 0}, "-k must be at least 1, got 0"),
        ({"all_users": True, "engine": "hadoop"}, "--engine must be local or spark, got 'hadoop'"),
        ({"all_users": True, "index": "fast"}, "--index must be one of auto, exact, ann"),
        ({"all_users": True, "master": "local[2]"}, "--master only applies with --engine spark"),
        ({"all_users": True, "engine": "spark"}, "--engine spark needs --output"),
        (
            {"all_users": True, "engine": "spark", "output": Path("x"), "index": "ann"},
            r"no --filter or --index \(Spark ranks exactly\)",
        ),
        (
            {
                "all_users": True,
                "engine": "spark",
                "output": Path("x"),
                "filters": parse_constraints({"price": {"max": 20}}),
            },
            "no --filter or --index",
        ),
    ],
)
def test_a_bad_recommend_spec_is_refused_when_made(
    tmp_path: Path, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(DataError, match=message):
        RecommendSpec(tmp_path / "never-read", **fields)


def test_recommend_names_what_is_wrong_with_the_folder_or_users(
    als_folder: Path, tmp_path: Path
) -> None:
    with pytest.raises(ModelError, match="not a rekko model folder"):
        recommend(RecommendSpec(tmp_path / "missing", all_users=True))
    with pytest.raises(UnknownIdError, match="unknown user id"):
        recommend(RecommendSpec(als_folder, users=["nobody"]))
    spec = RecommendSpec(als_folder, all_users=True, engine="spark", output=tmp_path / "out")
    assert spec.describe() == "Ranking in Spark (local[*])"
    assert RecommendSpec(als_folder, users=["a", "b"]).describe() == "Recommending for 2 user(s)"


def test_query_predict_and_similar_read_a_model_folder(
    small_demo: Dataset, als_folder: Path, tmp_path: Path
) -> None:
    model = load_model(als_folder)
    basket = [str(item) for item in small_demo.items.external_ids[:2]]
    answer = query(QuerySpec(als_folder, basket=basket, k=4))
    assert answer.attrs["source"] == "basket" and len(answer) == 4
    assert not set(basket) & set(answer["item_id"].astype(str))
    with pytest.raises(DataError, match="give --text, --prefer, --basket or several"):
        QuerySpec(als_folder)
    with pytest.raises(DataError, match="--prefer must be a JSON object"):
        QuerySpec(als_folder, preferences={})

    near = similar(als_folder, basket[:1], k=3)
    assert near.equals(model.similar_items(basket[:1], 3))

    pairs = tmp_path / "pairs.csv"
    pd.DataFrame({"user": ["u0000"], "item": ["i0001"]}).to_csv(pairs, index=False)
    with pytest.raises(
        DataError, match=r"pairs\.csv: missing column\(s\) \['item_id', 'user_id'\]"
    ):
        predict(als_folder, pairs)
    with pytest.raises(DataError, match="file not found"):
        predict(als_folder, tmp_path / "none.csv")


def test_split_explore_and_summarize_load_the_data_once(
    small_csv: DataSpec, tmp_path: Path
) -> None:
    seen: list[Dataset] = []
    parts = split(small_csv, "random", test_fraction=0.25, seed=7, loaded=seen.append)
    assert parts.data is seen[0] and len(parts.train) + len(parts.test) == len(parts.data)
    assert list(parts.train.columns) == list(parts.test.columns)
    train_pairs = set(zip(parts.train["user_id"], parts.train["item_id"], strict=True))
    test_pairs = set(zip(parts.test["user_id"], parts.test["item_id"], strict=True))
    assert test_pairs and not train_pairs & test_pairs
    again = split(small_csv, "random", test_fraction=0.25, seed=7)
    assert again.test.equals(parts.test)

    with pytest.raises(DataError, match="--images must be svg or png"):
        explore(small_csv, tmp_path / "never.html", images="gif")  # type: ignore[arg-type]
    report = explore(small_csv, tmp_path / "explore.html")
    assert report.is_file() and "<svg" in report.read_text()

    summary = summarize(DataSpec())
    assert summary == load_demo().summary(), "the demo shop when no data is named"
    assert summarize(small_csv)["users"] == parts.data.n_users


def test_demo_evaluates_trains_saves_and_recommends(tmp_path: Path) -> None:
    result = demo("popularity", tmp_path / "demo", users=2, k=3)
    assert result.metrics["model"].tolist() == ["popularity"]
    assert load_model(tmp_path / "demo").name == "popularity"
    assert result.recommendations.groupby("user_id").size().tolist() == [3, 3]
    assert result.recommendations["title"].notna().all()
