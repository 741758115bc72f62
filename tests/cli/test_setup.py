"""`make run` installs what running needs; `make test` adds the rest to the same virtualenv.

Read from the recipes `make -n` prints for a virtualenv that does not exist yet (a fresh
machine), so nothing is installed here.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path

Runner = Callable[..., subprocess.CompletedProcess[str]]
ROOT = Path(__file__).resolve().parents[2]
#: Distributions only the tests, the linters, Spark or the TensorFlow models use.
NOT_FOR_RUNNING = {
    "pytest",
    "pytest-xdist",
    "hypothesis",
    "ruff",
    "mypy",
    "playwright",
    "pyspark",
    "faiss-cpu",
    "tensorflow",
    "tensorflow-cpu",
    "keras",
}


def _installed_extras(target: str, venv: Path) -> list[set[str]]:
    """The extras of each ``pip install -e ".[...]"`` line that ``make TARGET`` would run."""
    recipe = subprocess.run(
        ["make", "-n", target, f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [set(extras.split(",")) for extras in re.findall(r'-e "\.\[([^\]]*)\]"', recipe)]


def _requirements(extras: set[str]) -> set[str]:
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert extras <= set(optional), f"unknown extras {extras - set(optional)}"
    return {_name(line) for extra in extras for line in optional[extra]}


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return match.group().lower()


def test_make_run_installs_the_runtime_only(tmp_path: Path) -> None:
    installs = _installed_extras("run", tmp_path / "venv")
    assert len(installs) == 1
    needed = _requirements(installs[0])
    assert {"fastapi", "uvicorn", "alembic", "matplotlib", "psycopg", "pymysql"} <= needed
    assert not needed & NOT_FOR_RUNNING


def test_make_test_adds_the_rest_to_the_same_virtualenv(tmp_path: Path) -> None:
    run, everything = _installed_extras("test", tmp_path / "venv")
    assert run == _installed_extras("run", tmp_path / "venv")[0]
    assert everything >= run | {"dev", "tf"}
    assert {"pytest", "ruff", "mypy", "pyspark", "tensorflow-cpu"} <= _requirements(everything)


def test_the_demo_runs_without_the_test_tools_and_tensorflow(
    rekko_without: Runner, tmp_path: Path
) -> None:
    blocked = ("tensorflow", "keras", "pyspark", "faiss", "pytest", "hypothesis", "playwright")
    result = rekko_without(blocked, "demo", "-o", str(tmp_path / "demo"), "--users", "1")
    assert result.returncode == 0, result.stderr
    assert "Offline evaluation" in result.stdout
    assert (tmp_path / "demo" / "model.json").is_file()
