"""Each data flag is declared once (``rekko.config.DATA_OPTIONS``) and offered only by the
commands that read it."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from rekko import cli
from rekko.config import DATA_OPTIONS, INTERACTION_OPTIONS, DataSpec

ALL = {option.name for option in DATA_OPTIONS}
FEATURES = {"items", "users", "item_kinds", "user_kinds"}
#: The data flags each command offers; the other commands offer none.
OFFERED = {
    ("train",): ALL,
    ("evaluate",): ALL,
    ("tune",): ALL,
    ("explore",): ALL,
    ("split",): ALL - FEATURES,
    ("datasets", "info"): {"dataset", "data_dir", "interactions"},
    # Imports take raw rows: files and tables, not the built-in data sets.
    ("serve",): ALL - {"dataset", "data_dir"},
    ("import",): ALL - {"dataset", "data_dir"},
}
#: Options that share a data flag's name but mean something else.
OTHER_MEANING = {("demo",): {"users"}}  # how many users to show


def commands() -> dict[tuple[str, ...], Any]:
    """Every command of the ``rekko`` app by its path (``("datasets", "info")``)."""
    found: dict[tuple[str, ...], Any] = {}

    def walk(command: Any, path: tuple[str, ...]) -> None:
        if hasattr(command, "commands"):  # a group
            for name, sub in command.commands.items():
                walk(sub, (*path, name))
        else:
            found[path] = command

    walk(typer.main.get_command(cli.app), ())
    return found


def test_every_data_option_is_a_data_setting() -> None:
    assert set(DataSpec.model_fields) >= ALL
    assert len(ALL) == len(DATA_OPTIONS) == 16
    assert {option.name for option in DATA_OPTIONS if option.features} == FEATURES
    assert set(INTERACTION_OPTIONS) == ALL - FEATURES
    spec = DataSpec(interactions="a.csv", user_kinds="age=numeric", items="items.csv")
    assert spec.feature_settings() == ["items", "user_kinds"]


@pytest.mark.parametrize("path", sorted(commands()), ids=" ".join)
def test_the_option_table_drives_every_command_that_reads_data(path: tuple[str, ...]) -> None:
    table = {option.name: option for option in DATA_OPTIONS}
    other = OTHER_MEANING.get(path, set())
    data_params = {
        param.name: param
        for param in commands()[path].params
        if param.name in table and param.name not in other
    }
    assert len(commands()) > len(OFFERED)
    assert set(data_params) == OFFERED.get(path, set())
    for name, param in data_params.items():
        assert tuple(param.opts) == table[name].flags
        assert param.help == table[name].help
        assert param.default is None


def test_split_offers_no_feature_flags() -> None:
    runner = CliRunner()
    result = runner.invoke(cli.app, ["split", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag in ("--item-kinds", "--user-kinds", "--items ", "--users "):
        assert flag not in result.output
    assert "--interactions" in result.output and "--event-weights" in result.output
    result = runner.invoke(cli.app, ["split", "--item-kinds", "a=numeric"])
    assert result.exit_code == 2  # a usage error, as for any unknown flag


def test_the_command_line_passes_no_locals_around() -> None:
    assert "locals()" not in inspect.getsource(cli)
