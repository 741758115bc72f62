"""The README's command-line section runs as written, in order, in one empty folder.

Every ``rekko ...`` line of that section's ``sh`` blocks (with its continuation lines) runs with
this interpreter's ``python -m rekko``; ``../shared/datasets`` paths read the folder of
``REKKO_DATASETS``. A line that ends in ``# needs: ...`` (a PostgreSQL server, the network, a
terminal of its own) is the only kind that is not run, and the test lists the ones it left out.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## The command line"
NEEDS = re.compile(r"#\s*needs:\s*(?P<what>.+)$")
SHARED_DATASETS = "../shared/datasets"
#: What a marked line may need: anything else is a line that should run.
NEEDS_ALLOWED = ("postgres", "network", "a terminal of its own")
#: Seconds one command may take before the test calls it broken.
COMMAND_TIMEOUT = 300


def section_text(readme: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level.

    Lines inside fenced blocks are never headings (a shell comment starts with ``#`` too).
    """
    lines = readme.splitlines(keepends=True)
    level = len(heading) - len(heading.lstrip("#"))
    inside, fenced, taken = False, False, []
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(rf"#{{1,{level}}} ", line):
            if inside:
                break
            inside = line.rstrip("\n") == heading
            continue
        if inside:
            taken.append(line)
    if not inside:
        raise AssertionError(f"no section {heading!r} in the README")
    return "".join(taken)


def sh_blocks(text: str) -> list[str]:
    """The bodies of the fenced ``sh`` blocks of ``text``, in order."""
    return re.findall(r"^```sh\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def commands(block: str) -> list[str]:
    """The commands of a block: continuation lines (ending in a backslash) joined."""
    joined = re.sub(r"\s*\\\n\s*", " ", block)
    return [line.strip() for line in joined.splitlines() if line.strip().startswith("rekko ")]


def argv(command: str, datasets: Path) -> list[str]:
    """A README command as arguments for ``python -m rekko``, without its trailing comment."""
    words = shlex.split(command, comments=True)
    assert words[0] == "rekko", command
    return [sys.executable, "-m", "rekko"] + [
        word.replace(SHARED_DATASETS, str(datasets)) for word in words[1:]
    ]


def test_the_parsing_keeps_continuations_comments_and_markers() -> None:
    block = (
        "# a comment\n"
        "rekko train -i a.csv \\\n"
        "    --items 'b c.csv' -o m  # inline note\n"
        "rekko serve --port 8000  # needs: a terminal of its own\n"
        "make run\n"
    )
    found = commands(block)
    assert found == [
        "rekko train -i a.csv --items 'b c.csv' -o m  # inline note",
        "rekko serve --port 8000  # needs: a terminal of its own",
    ]
    data = Path("data")
    assert argv(found[0], data)[3:] == ["train", "-i", "a.csv", "--items", "b c.csv", "-o", "m"]
    assert NEEDS.search(found[0]) is None
    match = NEEDS.search(found[1])
    assert match is not None and match["what"] == "a terminal of its own"
    assert argv("rekko x --data-dir ../shared/datasets/ml-100k", data)[-1] == "data/ml-100k"
    text = (
        "# T\n## A\n```sh\n# not a heading\nrekko a\n```\n"
        "### B\n```sh\nrekko b\n```\n## C\n```sh\nrekko c\n```\n"
    )
    assert [commands(b) for b in sh_blocks(section_text(text, "## A"))] == [
        ["rekko a"],
        ["rekko b"],
    ]


@pytest.mark.slow
def test_the_command_line_section_runs_as_written(datasets_dir: Path, tmp_path: Path) -> None:
    datasets = datasets_dir
    section = section_text(README.read_text(encoding="utf-8"), SECTION)
    lines = [command for block in sh_blocks(section) for command in commands(block)]
    assert len(lines) >= 20, "the command-line section lost its commands"
    env = {**os.environ, "COLUMNS": "200", "REKKO_DATASETS": str(datasets)}
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(README.parent / "src"), env.get("PYTHONPATH")])
    )
    left_out: list[str] = []
    timings: list[tuple[float, str]] = []
    scored: list[str] = []
    for command in lines:
        marker = NEEDS.search(command)
        if marker is not None:
            assert marker["what"].startswith(NEEDS_ALLOWED), f"unknown # needs: in {command}"
            left_out.append(f"{command.split('#')[0].strip()}  (needs: {marker['what'].strip()})")
            continue
        started = time.perf_counter()
        done = subprocess.run(
            argv(command, datasets),
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        timings.append((time.perf_counter() - started, command))
        if "--recommendations" in command:
            scored.append(done.stdout)
        assert done.returncode == 0, (
            f"README line failed (exit {done.returncode}): {command}\n"
            f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
        )
    print("\nnot run (marked # needs: ...):", *left_out, sep="\n  ")
    print(
        "slowest:",
        *(f"{s:6.1f}s {c[:90]}" for s, c in sorted(timings, reverse=True)[:5]),
        sep="\n  ",
    )
    assert (tmp_path / "models" / "tt").is_dir() and (tmp_path / "predictions.csv").is_file()
    # The file scored holds a model's lists for users whose test items it never saw: a model
    # trained on all the data scores 0 here, random lists 0.017, popularity 0.051.
    assert len(scored) == 1, "the section lost its evaluate --recommendations example"
    ndcg = re.search(r"ndcg@10\W+([0-9.]+)", scored[0])
    assert ndcg is not None, scored[0]
    assert 0.08 < float(ndcg[1]) < 0.4, scored[0]
