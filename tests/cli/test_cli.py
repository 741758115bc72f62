"""The command line, driven as a user would: real files in, real files out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from rekko.cli import app
from rekko.evaluation import evaluate_recommendations
from rekko.models import load_model

runner = CliRunner()


def rekko(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "rekko.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )


def ok(*args: str) -> str:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_train_recommend_similar_flow_with_column_mapping(shop_csv: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    ok(
        "train",
        "-i",
        str(shop_csv),
        "--user-col",
        "visitor",
        "--item-col",
        "product",
        "--event-col",
        "action",
        "--event-weights",
        "view=1,addtocart=3,transaction=5",
        "--model",
        "popularity",
        "--param",
        "weighted=true",
        "-o",
        str(model_dir),
    )
    assert (model_dir / "model.json").is_file()
    out = tmp_path / "recs.csv"
    ok("recommend", "-m", str(model_dir), "--all-users", "-k", "2", "-o", str(out))
    recs = pd.read_csv(out)
    assert list(recs.columns) == ["user_id", "item_id", "rank", "score"]
    assert set(recs["user_id"]) == {"v1", "v2", "v3", "v4"}
    # Weighted popularity: p1 = 1+1+1, p2 = 3+1+1, p3 = 5, p4 = 1 -> v4 (saw p2) gets p3, p1.
    assert recs[recs["user_id"] == "v4"]["item_id"].tolist() == ["p3", "p1"]
    assert not ((recs["user_id"] == "v1") & recs["item_id"].isin(["p1", "p2"])).any()


def test_config_file_drives_train(shop_csv: Path, tmp_path: Path) -> None:
    config = tmp_path / "rekko.toml"
    config.write_text(
        f'[data]\ninteractions = "{shop_csv}"\nuser_col = "visitor"\nitem_col = "product"\n'
        f'[train]\nmodel = "popularity"\noutput = "{tmp_path / "m"}"\n'
        "params = { weighted = false }\n"
    )
    ok("train", "--config", str(config))
    assert (tmp_path / "m" / "model.json").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "-i", "missing.csv", "-m", "popularity", "-o", "x"], "missing.csv"),
        (["train", "--dataset", "demo", "-m", "no-such-model", "-o", "x"], "unknown model"),
        (["train", "--dataset", "demo", "-m", "popularity", "-p", "bogus=1", "-o", "x"], "bogus"),
        (["recommend", "-m", "no-such-dir", "--user", "1"], "not a rekko model folder"),
        (["evaluate", "--recommendations", "r.csv"], "go together"),
        (["evaluate", "--dataset", "demo", "--models", "popularity", "-k", "0"], "-k"),
        (["tune", "--dataset", "demo", "--model", "popularity", "--metric", "rmse"], "--metric"),
        (["train", "--dataset", "demo", "-m", "ease", "--time-budget", "5", "-o", "x"], "auto"),
    ],
)
def test_bad_input_is_one_clear_line_without_traceback(
    args: list[str], message: str, tmp_path: Path
) -> None:
    result = rekko(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert message in result.stderr


def test_a_damaged_model_folder_is_one_clear_line(tmp_path: Path) -> None:
    ok("train", "--dataset", "demo", "-m", "popularity", "-o", str(tmp_path / "m"))
    (tmp_path / "m" / "state.npz").write_bytes(b"not a zip file")
    result = rekko("recommend", "-m", str(tmp_path / "m"), "--user", "u0001")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert "damaged or incomplete" in result.stderr


def test_unknown_user_is_a_clear_error(tmp_path: Path, shop_csv: Path) -> None:
    ok(
        "train",
        "-i",
        str(shop_csv),
        "--user-col",
        "visitor",
        "--item-col",
        "product",
        "-m",
        "popularity",
        "-o",
        str(tmp_path / "m"),
    )
    result = rekko("recommend", "-m", str(tmp_path / "m"), "--user", "nobody")
    assert result.returncode == 1
    assert "unknown user id(s): 'nobody'" in result.stderr


def test_demo_main_job_runs(tmp_path: Path) -> None:
    output = ok("demo", "-o", str(tmp_path / "demo"), "--users", "2", "-k", "3")
    assert "Offline evaluation" in output and "Top 3" in output
    assert (tmp_path / "demo" / "model.json").is_file()


@pytest.mark.slow
def test_popularity_on_movielens_through_the_cli(datasets_dir: Path, tmp_path: Path) -> None:
    """The foundation's acceptance figure: NDCG@10 close to 0.21 for popularity."""
    ratings = pd.read_csv(
        datasets_dir / "ml-100k" / "u.data",
        sep="\t",
        names=["user_id", "item_id", "rating", "timestamp"],
    )
    source = tmp_path / "ratings.csv"
    ratings.to_csv(source, index=False)
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    ok("split", "-i", str(source), "--train-output", str(train), "--test-output", str(test))
    ok("train", "-i", str(train), "-m", "popularity", "-o", str(tmp_path / "pop"))
    recs = tmp_path / "recs.csv"
    ok("recommend", "-m", str(tmp_path / "pop"), "--all-users", "-k", "100", "-o", str(recs))
    frame = pd.read_csv(recs)
    assert frame.groupby("user_id").size().eq(100).all()
    scores = evaluate_recommendations(frame, pd.read_csv(test))
    assert 0.19 <= scores["ndcg@10"] <= 0.23, scores
    table = tmp_path / "scores.json"
    ok("evaluate", "--recommendations", str(recs), "--test", str(test), "-o", str(table))
    assert pd.read_json(table)["ndcg@10"][0] == pytest.approx(scores["ndcg@10"])


def test_explore_and_evaluation_reports_are_written(tmp_path: Path) -> None:
    explore = tmp_path / "explore.html"
    ok("explore", "--dataset", "demo", "-o", str(explore))
    page = explore.read_text()
    assert "<svg" in page and "https://" not in page
    report = tmp_path / "evaluation.html"
    output = ok(
        "evaluate",
        "--dataset",
        "demo",
        "--models",
        "popularity,random",
        "-k",
        "5",
        "-k",
        "10",
        "--report",
        str(report),
        "--images",
        "svg",
        "-o",
        str(tmp_path / "table.csv"),
    )
    assert "Wrote the report" in output
    table = pd.read_csv(tmp_path / "table.csv")
    assert table["model"].tolist() == ["popularity", "random"]
    assert "popularity" in report.read_text()
    charts = sorted((tmp_path / "evaluation_charts").glob("*.svg"))
    assert len(charts) >= 3 and all("<svg" in chart.read_text() for chart in charts)
    result = rekko("evaluate", "--dataset", "demo", "--images", "svg", cwd=tmp_path)
    assert result.returncode == 1 and "goes with --report" in result.stderr


def test_train_and_export_a_two_tower_model(tmp_path: Path) -> None:
    ok("train", "--dataset", "demo", "-m", "two-tower", "-o", str(tmp_path / "tt"))
    ok("export", "-m", str(tmp_path / "tt"), "-f", "savedmodel", "-o", str(tmp_path / "sm"))
    assert (tmp_path / "sm" / "saved_model.pb").is_file()
    assert (tmp_path / "sm" / "manifest.json").is_file()
    result = rekko("export", "-m", str(tmp_path / "tt"), "-f", "onnx", "-o", str(tmp_path / "x"))
    assert result.returncode == 1 and "savedmodel or tflite" in result.stderr


def test_unknown_config_keys_are_errors_not_ignored(tmp_path: Path) -> None:
    config = tmp_path / "rekko.toml"
    config.write_text('[data]\ndataset = "demo"\n[train]\nmodle = "ease"\noutput = "m"\n')
    result = rekko("train", "--config", str(config), "-m", "popularity", cwd=tmp_path)
    assert result.returncode == 1
    assert "unknown key(s) modle in [train]" in result.stderr, result.stderr
    config.write_text('[train]\nmodel = "popularity"\noutput = "m"\ndataset = "demo"\n')
    result = rekko("train", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1 and "data settings go in [data]" in result.stderr
    assert not (tmp_path / "m").exists()


def test_query_answers_stated_needs_with_no_user(datasets_dir: Path, tmp_path: Path) -> None:
    from rekko.data.loaders import load_fiverr

    ok(
        "train",
        "--dataset",
        "fiverr",
        "--data-dir",
        str(datasets_dir / "fiverr"),
        "-m",
        "content",
        "-o",
        str(tmp_path / "gigs"),
    )
    out = tmp_path / "anime.csv"
    ok(
        "query",
        "-m",
        str(tmp_path / "gigs"),
        "--prefer",
        '{"gig_design_style": "anime"}',
        "--text",
        "cute character",
        "--filter",
        '{"gig_price_from": {"max": 30}}',
        "-k",
        "8",
        "-o",
        str(out),
    )
    recs = pd.read_csv(out, dtype={"item_id": str})
    assert list(recs.columns) == ["item_id", "rank", "score"] and len(recs) == 8
    gigs = load_fiverr(datasets_dir / "fiverr")
    assert gigs.item_features is not None
    frame = gigs.item_features.frame
    index = gigs.items.to_index(recs["item_id"])
    assert (frame["gig_price_from"].to_numpy()[index] <= 30).all()
    assert (frame["gig_design_style"].to_numpy()[index] == "anime").all()

    result = rekko("query", "-m", str(tmp_path / "gigs"), cwd=tmp_path)
    assert result.returncode == 1 and "give --text, --prefer, --basket" in result.stderr
    # a model without a query step answers through the shared routes, and says which
    ok("train", "--dataset", "demo", "-m", "popularity", "-o", str(tmp_path / "pop"))
    result = rekko("query", "-m", str(tmp_path / "pop"), "--text", "shoes", cwd=tmp_path)
    assert result.returncode == 0 and "answered by: popularity" in result.stderr
    pop = load_model(tmp_path / "pop")
    some = list(pop.items_.external_ids[:2])  # type: ignore[union-attr]
    result = rekko(
        "query", "-m", str(tmp_path / "pop"), "--basket", ",".join(map(str, some)), cwd=tmp_path
    )
    assert result.returncode == 0 and "answered by: basket" in result.stderr
    assert not {str(item) for item in some} & set(result.stdout.split()), "basket items shown"


def test_evaluate_takes_parameters_per_model(tmp_path: Path) -> None:
    table = tmp_path / "table.csv"
    ok(
        "evaluate",
        "--dataset",
        "demo",
        "--models",
        "item-knn,popularity",
        "-p",
        "item-knn.k_neighbors=5",
        "-o",
        str(table),
    )
    narrow = pd.read_csv(table).set_index("model")
    ok("evaluate", "--dataset", "demo", "--models", "item-knn,popularity", "-o", str(table))
    default = pd.read_csv(table).set_index("model")
    assert narrow.loc["popularity", "ndcg@10"] == default.loc["popularity", "ndcg@10"]
    assert narrow.loc["item-knn", "ndcg@10"] != default.loc["item-knn", "ndcg@10"]
    result = rekko("evaluate", "--dataset", "demo", "--models", "ease", "-p", "als.factors=8")
    assert result.returncode == 1 and "which --models does not name" in result.stderr
    result = rekko("evaluate", "--dataset", "demo", "--models", "ease", "-p", "ease.nope=1")
    assert result.returncode == 1 and "nope" in result.stderr


def test_evaluate_warns_loudly_about_a_tuned_folder_that_saw_its_test_part(
    tmp_path: Path,
) -> None:
    tuned = tmp_path / "tuned"
    ok("tune", "--dataset", "demo", "-m", "popularity", "-n", "1", "--seed", "3", "-o", str(tuned))
    honest = rekko("evaluate", "--dataset", "demo", "--seed", "3", "--tuned", str(tuned))
    assert honest.returncode == 0 and "WARNING" not in honest.stderr
    assert "tuned (tuned popularity)" in honest.stdout
    other = rekko("evaluate", "--dataset", "demo", "--tuned", str(tuned))
    assert other.returncode == 0 and "WARNING" in other.stderr and "optimistic" in other.stderr


def test_feature_kinds_can_be_declared(shop_csv: Path, tmp_path: Path) -> None:
    from rekko.models import load_model

    items = tmp_path / "items.csv"
    pd.DataFrame(
        {"item_id": ["p1", "p2", "p3", "p4"], "size": [38, 40, 42, 40], "price": [5, 7, 9, 11]}
    ).to_csv(items, index=False)
    columns = ["-i", str(shop_csv), "--user-col", "visitor", "--item-col", "product"]
    ok("train", *columns, "--items", str(items), "-m", "content", "-o", str(tmp_path / "a"))
    inferred = load_model(tmp_path / "a").item_features_
    assert inferred is not None and inferred.kinds["size"] == "numeric"
    declared_args = ["--items", str(items), "--item-kinds", "size=categorical"]
    ok("train", *columns, *declared_args, "-m", "content", "-o", str(tmp_path / "b"))
    declared = load_model(tmp_path / "b").item_features_
    assert declared is not None and declared.kinds["size"] == "categorical"
    assert declared.kinds["price"] == "numeric"

    bad = rekko("train", *columns, "--items", str(items), "--item-kinds", "size=shoe", "-m",
                "content", "-o", "x", cwd=tmp_path)  # fmt: skip
    assert bad.returncode == 1 and "must be one of" in bad.stderr, bad.stderr
    alone = rekko("train", *columns, "--item-kinds", "size=numeric", "-m", "content", "-o", "x",
                  cwd=tmp_path)  # fmt: skip
    assert alone.returncode == 1 and "--items file" in alone.stderr, alone.stderr


def test_predict_similar_and_datasets_commands(datasets_dir: Path, tmp_path: Path) -> None:
    data = ["--dataset", "movielens-100k", "--data-dir", str(datasets_dir / "ml-100k")]
    ok("train", *data, "-m", "knn-baseline", "-o", str(tmp_path / "ratings"))
    pairs = tmp_path / "pairs.csv"
    pd.DataFrame({"user_id": [1, 1, 42, 99999], "item_id": [1, 50, 50, 50]}).to_csv(
        pairs, index=False
    )
    out = tmp_path / "predictions.csv"
    ok("predict", "-m", str(tmp_path / "ratings"), "--pairs", str(pairs), "-o", str(out))
    predictions = pd.read_csv(out)
    assert list(predictions.columns) == ["user_id", "item_id", "prediction"]
    assert len(predictions) == 4 and predictions["prediction"].between(1, 5).all()
    # Star Wars (50) is predicted above the user's mean for most users; an unknown user
    # gets the item's baseline, not an error.
    assert predictions["prediction"].iloc[3] > 3.5

    ok("train", *data, "-m", "item-knn", "-o", str(tmp_path / "knn"))
    similar = tmp_path / "similar.csv"
    ok("similar", "-m", str(tmp_path / "knn"), "--item", "50", "-k", "5", "-o", str(similar))
    frame = pd.read_csv(similar)
    assert len(frame) == 5 and 50 not in set(frame["similar_item_id"])
    assert {172, 181} & set(frame["similar_item_id"])  # Empire Strikes Back, Return of the Jedi

    listed = ok("datasets", "list")
    assert "movielens-100k" in listed and "retailrocket" in listed
    no_ratings = rekko("predict", "-m", str(tmp_path / "knn"), "--pairs", str(pairs), "-o", "x")
    assert no_ratings.returncode == 1 and "explicit" in no_ratings.stderr


def test_auto_is_trained_within_a_budget_and_described(tmp_path: Path) -> None:
    folder = tmp_path / "auto"
    ok("train", "--dataset", "demo", "-m", "auto", "--time-budget", "120", "-o", str(folder))
    meta = json.loads((folder / "model.json").read_text())
    assert meta["params"]["time_budget"] == 120
    report = meta["metadata"]["auto"]
    assert [entry["model"] for entry in report["tried"]][:3] == ["ease", "als", "item-knn"]
    described = ok("models", str(folder))
    assert "Families tried on the inner split" in described
    for entry in report["tried"]:
        assert entry["model"] in described
    assert f"chosen: {', '.join(report['chosen'])}" in described
    assert "auto" in ok("models")  # the registry listing still works without a folder
