"""Run the real console entry point in a fresh interpreter where some modules cannot be imported.

``sys.modules[name] = None`` makes ``import name`` (and its submodules) fail as if the package
were not installed, which is how a user without an extra meets the command line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

Runner = Callable[..., subprocess.CompletedProcess[str]]


def _run_without(
    blocked: tuple[str, ...], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    program = (
        "import sys\n"
        f"sys.modules.update(dict.fromkeys({list(blocked)!r}))\n"
        "from rekko.cli import main\n"
        "main()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", program, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
        timeout=180,
    )


@pytest.fixture
def rekko_without() -> Runner:
    """``rekko_without(("fastapi",), "serve", ...)``: the CLI with those modules missing."""
    return _run_without
