"""A command whose optional extra is not installed says, in one line, what to install."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

Runner = Callable[..., subprocess.CompletedProcess[str]]


def _one_line_naming(result: subprocess.CompletedProcess[str], install: str) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert install in lines[0]
    return lines[0]


@pytest.mark.parametrize("module", ["fastapi", "uvicorn"])
def test_serve_without_the_serve_extra(rekko_without: Runner, tmp_path: Path, module: str) -> None:
    result = rekko_without((module,), "serve", "--port", "8799", cwd=tmp_path)
    line = _one_line_naming(result, "pip install 'rekko[serve]'")
    assert module in line
    assert "Serving on" not in result.stdout
    assert not (tmp_path / "rekko-data").exists()


def test_explore_without_matplotlib(rekko_without: Runner, tmp_path: Path) -> None:
    report = tmp_path / "explore.html"
    result = rekko_without(("matplotlib",), "explore", "--dataset", "demo", "-o", str(report))
    _one_line_naming(result, "pip install 'rekko[reports]'")
    assert not report.exists()


def test_evaluate_report_without_matplotlib(rekko_without: Runner, tmp_path: Path) -> None:
    report = tmp_path / "evaluation.html"
    result = rekko_without(
        ("matplotlib",), "evaluate", "--dataset", "demo", "--report", str(report)
    )
    _one_line_naming(result, "pip install 'rekko[reports]'")
    assert not report.exists()


def test_a_tensorflow_model_without_tensorflow(rekko_without: Runner, tmp_path: Path) -> None:
    result = rekko_without(
        ("tensorflow", "keras"),
        "train",
        "--dataset",
        "demo",
        "-m",
        "two-tower",
        "-o",
        str(tmp_path / "tt"),
    )
    _one_line_naming(result, "pip install 'rekko[tf]'")
