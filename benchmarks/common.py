"""Helpers shared by the benchmark scripts: data location, a header line, markdown tables."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def datasets_dir() -> Path:
    """$REKKO_DATASETS, else ../shared/datasets beside the repository."""
    return Path(os.environ.get("REKKO_DATASETS", ROOT.parent / "shared" / "datasets"))


def header() -> str:
    """Date, commit and machine, for the top of a results file."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    return (
        f"{datetime.now(UTC):%Y-%m-%d}, commit {commit or 'unknown'}, {os.cpu_count()} CPU cores, "
        f"Python {platform.python_version()}, {platform.machine()}"
    )


def markdown_table(frame: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub markdown table (floats rounded to ``digits``)."""

    def cell(value: object) -> str:
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    lines = [
        "| " + " | ".join(str(c) for c in frame.columns) + " |",
        "|" + "|".join("---" for _ in frame.columns) + "|",
    ]
    lines += [
        "| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join(lines)


def write_result(name: str, text: str) -> Path:
    """Write ``results/<name>.md`` and return its path."""
    path = ROOT / "benchmarks" / "results" / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n")
    return path
