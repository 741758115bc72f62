"""``rekko train --engine spark`` driven as a user would, with real PySpark in local mode."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from rekko.cli import app
from rekko.models import load_model

pytest.importorskip("pyspark")

pytestmark = pytest.mark.slow
runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.output + repr(result.exception)


def rekko(*args: str) -> tuple[int, str]:
    """The real console entry point in a fresh interpreter: exit code and stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "rekko.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )
    return done.returncode, done.stderr


@pytest.fixture
def events_csv(tmp_path: Path) -> Path:
    """A small shop log with string ids and event types, the Retailrocket way."""
    rows = []
    for user in range(30):
        for step in range(6):
            item = (user * 3 + step * 5) % 25
            rows.append((f"v{user}", f"p{item}", ("view", "addtocart", "transaction")[step % 3]))
    path = tmp_path / "events.csv"
    pd.DataFrame(rows, columns=["visitorid", "itemid", "event"]).to_csv(path, index=False)
    return path


def spark_training(events: Path) -> list[str]:
    """``rekko train --engine spark`` on the shop log, its columns mapped."""
    columns = ["--user-col", "visitorid", "--item-col", "itemid"]
    return ["train", "--engine", "spark", "-i", str(events), *columns]


def test_train_with_spark_then_recommend_from_the_folder(events_csv: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    code, output = invoke(
        *spark_training(events_csv),
        "--master",
        "local[2]",
        "--event-col",
        "event",
        "--event-weights",
        "view=1,addtocart=3,transaction=5",
        "-p",
        "factors=8",
        "-p",
        "iterations=3",
        "-o",
        str(model_dir),
    )
    assert code == 0, output
    assert "Trained spark-als" in output
    model = load_model(model_dir)
    assert model.name == "spark-als"
    assert model.params.factors == 8 and model.params.iterations == 3
    assert model.metadata_["engine"] == "spark"
    assert model.users_ is not None and "v0" in set(model.users_.external_ids)

    recs_path = tmp_path / "recs.csv"
    code, output = invoke(
        "recommend", "--model", str(model_dir), "--user", "v0", "-k", "5", "-o", str(recs_path)
    )
    assert code == 0, output
    recs = pd.read_csv(recs_path, dtype={"user_id": str, "item_id": str})
    events = pd.read_csv(events_csv, dtype=str)
    seen = set(events.loc[events["visitorid"] == "v0", "itemid"])
    assert len(recs) == 5
    assert not seen & set(recs["item_id"]), "a seen item was recommended"


def test_recommend_in_spark_writes_what_rekko_recommends(
    events_csv: Path, tmp_path: Path, same_rankings: Callable[..., None]
) -> None:
    model_dir = tmp_path / "model"
    code, output = invoke(*spark_training(events_csv), "-p", "iterations=3", "-o", str(model_dir))
    assert code == 0, output
    local, spark = tmp_path / "local.csv", tmp_path / "spark.parquet"
    code, output = invoke(
        "recommend", "-m", str(model_dir), "--all-users", "-k", "4", "-o", str(local)
    )
    assert code == 0, output
    code, output = invoke(
        "recommend",
        "-m",
        str(model_dir),
        "--all-users",
        "-k",
        "4",
        "--engine",
        "spark",
        "--master",
        "local[2]",
        "-o",
        str(spark),
    )
    assert code == 0, output
    assert spark.is_dir(), "Spark writes a folder of Parquet parts"
    ours = pd.read_csv(local, dtype={"user_id": str, "item_id": str})
    theirs = pd.read_parquet(spark).astype({"user_id": str, "item_id": str})
    assert len(ours) == len(theirs) == 30 * 4
    # The same items up to ties: Spark scores in other blocks, so equal scores may differ in
    # their last bits and trade places.
    same_rankings(ours, theirs, rtol=1e-4, atol=1e-5)

    code, stderr = rekko("recommend", "-m", str(model_dir), "--all-users", "--engine", "spark")
    assert code == 1 and "needs --output" in stderr, stderr


def test_train_with_spark_on_a_builtin_data_set(tmp_path: Path) -> None:
    code, output = invoke(
        "train",
        "--engine",
        "spark",
        "--dataset",
        "demo",
        "-p",
        "iterations=2",
        "-o",
        str(tmp_path / "demo"),
    )
    assert code == 0, output
    model = load_model(tmp_path / "demo")
    assert model.name == "spark-als"
    assert len(model.recommend([model.users_.external_ids[0]], k=3)) == 3  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "ease"], "trains ALS"),
        (["--items", "items.csv"], "interactions only"),
        (["-p", "neighbours=5"], "unknown spark-als parameter"),
        (["-p", "factors=0"], "factors"),
    ],
)
def test_bad_spark_training_requests_fail_with_one_line(
    events_csv: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    code, stderr = rekko(
        *spark_training(events_csv),
        "-o",
        str(tmp_path / "never"),
        *extra,
    )
    assert code == 1
    assert message in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp_path / "never").exists()


def test_engine_and_master_are_checked(events_csv: Path, tmp_path: Path) -> None:
    code, stderr = rekko("train", "--engine", "hadoop", "-i", str(events_csv), "-o", "x")
    assert code == 1 and "--engine must be local or spark" in stderr, stderr
    code, stderr = rekko(
        "train", "-m", "popularity", "--master", "local[2]", "-i", str(events_csv), "-o", "x"
    )
    assert code == 1 and "--master only applies" in stderr, stderr
