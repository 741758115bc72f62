"""What the commands print: tables headed by model names, whole ids, no TensorFlow noise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from rekko.cli import app

runner = CliRunner()


def ok(*args: str, columns: int = 200) -> str:
    result = runner.invoke(app, list(args), env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def _header(output: str) -> list[str]:
    line = next(line for line in output.splitlines() if line.startswith("┃"))
    return [cell.strip() for cell in line.strip("┃").split("┃")]


def _cells(output: str, column: int, starts: int) -> list[str]:
    """Column ``column`` of each row of the one table in ``output``, rejoining folded lines
    (a row starts where column ``starts``, which never folds, has a value)."""
    rows: list[str] = []
    for line in output.splitlines():
        if not line.startswith("│"):
            continue
        cells = [cell.strip() for cell in line.strip("│").split("│")]
        if cells[starts] or not rows:
            rows.append(cells[column])
        else:
            rows[-1] += cells[column]
    return rows


def test_evaluate_heads_its_columns_with_the_model_names() -> None:
    output = ok("evaluate", "--dataset", "demo", "--models", "popularity,ease", columns=120)
    assert _header(output) == ["metric", "popularity", "ease"]
    users = next(line for line in output.splitlines() if line.startswith("│ users "))
    assert _cells(users, 1, 0) == ["600"]  # a count, not 600.0000


def test_narrow_tables_fold_ids_instead_of_cutting_them(tmp_path: Path) -> None:
    items = [f"catalogue-item-with-a-long-identifier-{n:03d}" for n in range(6)]
    lines = [f"visitor-{u},{items[(u * 7 + v) % 6]}" for u in range(30) for v in range(3)]
    (tmp_path / "events.csv").write_text("user_id,item_id\n" + "\n".join(lines) + "\n")
    ok("train", "-i", str(tmp_path / "events.csv"), "-m", "popularity", "-o", str(tmp_path / "m"))
    query = ok("query", "-m", str(tmp_path / "m"), "--basket", items[0], "-k", "4", columns=40)
    recommend = ok("recommend", "-m", str(tmp_path / "m"), "-u", "visitor-1", columns=40)
    for output, column, rank in ((query, 0, 1), (recommend, 1, 2)):
        assert "…" not in output
        shown = _cells(output, column, rank)
        assert len(shown) >= 3
        assert set(shown) <= set(items)


def test_tensorflow_commands_print_no_native_start_up_lines(tmp_path: Path) -> None:
    train = ("train", "--dataset", "demo", "-m", "two-tower", "-p", "max_epochs=1")
    result = subprocess.run(
        [sys.executable, "-m", "rekko.cli", *train, "-o", str(tmp_path / "tt")],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Trained two-tower" in result.stdout
    assert result.stderr == "", result.stderr
    unknown = subprocess.run(  # errors after TensorFlow loaded still reach stderr
        [sys.executable, "-m", "rekko.cli", "recommend", "-m", str(tmp_path / "tt"), "-u", "x"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines() == ["error: unknown user id(s): 'x'"]
