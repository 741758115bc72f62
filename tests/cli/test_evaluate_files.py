"""``rekko evaluate --recommendations``: a file scores as the model that wrote it does.

The split ``rekko split`` writes is the one ``rekko evaluate`` makes with the same flags, so
scoring ``rekko recommend``'s file on it must give the same figures as evaluating the model.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from rekko.cli import app

runner = CliRunner()
SHARED = ["ndcg@10", "recall@10", "map@10", "coverage@10", "novelty@10", "popularity@10"]


def ok(*args: str) -> str:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("scored")
    paths = {name: folder / f"{name}.csv" for name in ("train", "test", "recs")}
    split = ("--train-output", str(paths["train"]), "--test-output", str(paths["test"]))
    ok("split", "--dataset", "demo", *split)
    ok("train", "-i", str(paths["train"]), "-m", "ease", "-o", str(folder / "ease"))
    ok("recommend", "-m", str(folder / "ease"), "--all-users", "-o", str(paths["recs"]))
    return paths


def _scores(*args: str, output: Path) -> pd.Series:
    ok("evaluate", *args, "-o", str(output))
    frame = pd.read_csv(output)
    assert len(frame) == 1
    return frame.iloc[0]


@pytest.mark.parametrize("threshold", [None, 2.0])
def test_a_recommendations_file_scores_as_its_model(
    files: dict[str, Path], tmp_path: Path, threshold: float | None
) -> None:
    cut = [] if threshold is None else ["--relevance-threshold", str(threshold)]
    model = _scores("--dataset", "demo", "--models", "ease", *cut, output=tmp_path / "m.csv")
    scored = _scores(
        "--recommendations",
        str(files["recs"]),
        "--test",
        str(files["test"]),
        "--train",
        str(files["train"]),
        *cut,
        output=tmp_path / "f.csv",
    )
    for metric in SHARED:
        assert scored[metric] == pytest.approx(model[metric], rel=1e-9), metric
    assert scored["users"] == model["users"]
    assert 0.05 < scored["ndcg@10"] < 0.5 and 0.2 < scored["coverage@10"] <= 1.0


def test_the_threshold_changes_what_counts(files: dict[str, Path], tmp_path: Path) -> None:
    scored = {
        threshold: _scores(
            "--recommendations",
            str(files["recs"]),
            "--test",
            str(files["test"]),
            "--relevance-threshold",
            str(threshold),
            output=tmp_path / f"{threshold}.csv",
        )
        for threshold in (0.5, 2.0)
    }
    test = pd.read_csv(files["test"])
    assert scored[0.5]["users"] == test["user_id"].nunique()
    assert scored[2.0]["users"] == test.loc[test["value"] >= 2, "user_id"].nunique()
    assert scored[2.0]["users"] < scored[0.5]["users"]
    assert "coverage@10" not in scored[0.5]  # that needs the training interactions


def _error(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "rekko.cli", "evaluate", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_threshold_needs_a_rating_or_value_column(files: dict[str, Path], tmp_path: Path) -> None:
    bare = tmp_path / "bare.csv"
    pd.read_csv(files["test"])[["user_id", "item_id"]].to_csv(bare, index=False)
    scored = ("--recommendations", str(files["recs"]), "--test", str(bare))
    line = _error(*scored, "--relevance-threshold", "2", cwd=tmp_path)
    assert "lacks a 'rating' or 'value' column" in line


def test_train_goes_with_recommendations(files: dict[str, Path], tmp_path: Path) -> None:
    line = _error("--dataset", "demo", "--train", str(files["train"]), cwd=tmp_path)
    assert "--train goes with --recommendations" in line
