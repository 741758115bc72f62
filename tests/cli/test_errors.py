"""Error lines a new user meets first: they name the flag to use and the values allowed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rekko.data.loaders import DATASETS


def rekko(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rekko.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("header", "flag"),
    [("visitor,item_id", "--user-col visitor"), ("user_id,product", "--item-col product")],
)
def test_a_missing_id_column_names_the_flag_that_maps_it(
    tmp_path: Path, header: str, flag: str
) -> None:
    (tmp_path / "events.csv").write_text(f"{header}\nu1,i1\nu2,i2\n")
    result = rekko("train", "-i", "events.csv", "-m", "popularity", "-o", "m", cwd=tmp_path)
    line = _error_line(result)
    assert line.endswith(f"Map it with {flag}")
    flags = rekko("train", "--help", cwd=tmp_path).stdout
    assert flag.split()[0] in flags


def test_an_unknown_data_set_lists_the_known_ones(tmp_path: Path) -> None:
    line = _error_line(rekko("datasets", "info", "--dataset", "nosuch", cwd=tmp_path))
    assert "unknown data set 'nosuch'" in line
    assert "--data-dir" not in line
    for name in ("demo", *DATASETS):
        assert name in line


def test_a_misspelt_data_set_gets_a_suggestion(tmp_path: Path) -> None:
    line = _error_line(rekko("datasets", "info", "--dataset", "fiverrr", cwd=tmp_path))
    assert "did you mean 'fiverr'?" in line


def test_a_known_data_set_without_its_files_still_asks_for_data_dir(tmp_path: Path) -> None:
    line = _error_line(rekko("datasets", "info", "--dataset", "fiverr", cwd=tmp_path))
    assert "needs --data-dir" in line
