"""examples/recipes: Seefud two-tower with ingredient text, exported, answered by TensorFlow
alone in a fresh process; the answers must equal rekko's."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).parents[2] / "examples" / "recipes" / "recipes.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("recipes_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def summary(datasets_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pytest.importorskip("tensorflow")
    out = tmp_path_factory.mktemp("recipes")
    argv = ["--data", str(datasets_dir / "seefud"), "--out", str(out), "--user", "7"]
    return _load().main([*argv, "--user", "42", "-k", "5"])


def test_ids_are_encoded(summary: dict[str, Any]) -> None:
    assert summary["n_users"] == 50 and summary["n_items"] == 1726


def test_holdout_figures_are_sane(summary: dict[str, Any]) -> None:
    rows = {row["model"]: row for row in summary["evaluation"].values()}
    assert set(rows) == {"popularity", "two-tower"}
    for row in rows.values():
        assert 0.0 <= row["ndcg@10"] <= 1.0 and row["users"] == 50
    # the generated interactions carry little signal: popularity hits some users at least
    assert rows["popularity"]["hit_rate@10"] >= 0.1


def test_exports_exist(summary: dict[str, Any]) -> None:
    assert "user_tower.tflite" in summary["tflite_files"]
    assert "item_vectors.npy" in summary["tflite_files"]


def test_tensorflow_alone_answers_like_rekko(summary: dict[str, Any]) -> None:
    assert summary["tensorflow"]["rekko imported"] is False
    for user in ("7", "42"):
        ours, theirs = summary["rekko"][user], summary["tensorflow"][user]
        assert len(ours) == 5
        assert [title for title, _ in ours] == [title for title, _ in theirs]
        for (_, a), (_, b) in zip(ours, theirs, strict=True):
            assert a == pytest.approx(b, abs=1e-4)
        assert set(summary["seen"][user]).isdisjoint(title for title, _ in ours)
