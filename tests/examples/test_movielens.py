"""examples/movielens: the top 3 for user "42" printed by rekko equals the top 3 answered from
the exported SavedModel by a process that imports TensorFlow only.

The example has no option to shorten training (two-tower to convergence on all of
MovieLens-100K: 88 s here on a shared 2-core machine), so this test is the slowest one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

FOLDER = Path(__file__).parents[2] / "examples" / "movielens"
LINE = re.compile(r"^\s+(\d)\. item (\S+) .*\(score (-?[0-9.]+)\)$")


def _top3(output: str, heading: str) -> list[tuple[str, float]]:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    rows = []
    for line in lines[start + 1 : start + 4]:
        match = LINE.match(line)
        assert match, line
        rows.append((match.group(2), float(match.group(3))))
    return rows


def test_rekko_and_tensorflow_alone_agree(datasets_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    trained = subprocess.run(
        [
            sys.executable,
            str(FOLDER / "train_and_export.py"),
            "--data",
            str(datasets_dir / "ml-100k"),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    ours = _top3(trained.stdout, 'rekko top 3 for user "42"')
    queried = subprocess.run(
        [sys.executable, str(FOLDER / "query_savedmodel.py"), str(tmp_path / "savedmodel"), "42"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    theirs = _top3(queried.stdout, 'top 3 for user "42"')
    assert [item for item, _ in ours] == [item for item, _ in theirs]
    for (_, a), (_, b) in zip(ours, theirs, strict=True):
        assert a == pytest.approx(b, abs=1e-3)
    assert "rekko imported: False" in queried.stdout
    assert (tmp_path / "tflite" / "user_tower.tflite").exists()


ROW = re.compile(r"^\| (\S+) \| ([0-9.]+) \|")


def test_comparison_table_puts_rekkos_best_far_above_the_quickstart(datasets_dir: Path) -> None:
    pytest.importorskip("tensorflow")
    compared = subprocess.run(
        [
            sys.executable,
            str(FOLDER / "compare.py"),
            "--data",
            str(datasets_dir / "ml-100k"),
            "--models",
            "popularity,tfrs-quickstart,ease",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        check=True,
    )
    ndcg = {
        match.group(1): float(match.group(2))
        for line in table_lines(compared.stdout)
        if (match := ROW.match(line))
    }
    assert set(ndcg) == {"popularity", "tfrs-quickstart", "ease"}, compared.stdout
    assert 0.19 <= ndcg["popularity"] <= 0.24, ndcg
    assert 0.25 <= ndcg["tfrs-quickstart"] <= 0.40, ndcg
    assert 0.43 <= ndcg["ease"] <= 0.48, ndcg
    best = _top3(compared.stdout, "best: ease")
    assert len({item for item, _ in best}) == 3


def table_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("| ")]
