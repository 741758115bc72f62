"""Every ``--help`` page, read the way a new user reads it."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import typer.core
import typer.main
from typer.testing import CliRunner

from rekko.cli import app

runner = CliRunner()


Command = typer.core.TyperCommand | typer.core.TyperGroup


def _commands(
    command: Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Command]]:
    yield path, command
    if isinstance(command, typer.core.TyperGroup):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands(typer.main.get_group(app)))


def _help(path: tuple[str, ...]) -> str:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def _written_texts(command: Command) -> list[str]:
    """The help texts as the code writes them (undoing the escape that keeps them literal)."""
    texts = [command.help or "", command.epilog or ""]
    texts += [getattr(parameter, "help", None) or "" for parameter in command.params]
    return [text.replace("\\[", "[") for text in texts]


@pytest.mark.parametrize("path", list(COMMANDS), ids=lambda path: " ".join(path) or "rekko")
def test_help_shows_bracketed_words_as_written(path: tuple[str, ...]) -> None:
    page = " ".join(_help(path).split())
    for text in _written_texts(COMMANDS[path]):
        for word in re.findall(r"\[[^\]\s]+\]", text):
            assert word in page, f"{word} lost from `rekko {' '.join(path)} --help`"
    assert not re.search(r"\b(with|then|and|in|a)  (and|in|per|--config)\b", _help(path))


def test_config_help_names_the_data_table() -> None:
    assert "A rekko.toml with [data] and per-command keys." in _help(("train",))
    assert "then [serve] in --config" in _help(("serve",))
