"""Every ``--help`` page, read the way a new user reads it."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator

import pytest
import typer.core
import typer.main
from typer.testing import CliRunner

from rekko.cli import app
from rekko.models import get_model_class

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


@pytest.mark.parametrize("path", list(COMMANDS), ids=lambda path: " ".join(path) or "rekko")
def test_value_hints_are_readable(path: tuple[str, ...]) -> None:
    page = _help(path)
    assert "<bool>" not in page and "<list[" not in page
    assert "--help" in page


MAIN_COMMANDS = ["train", "recommend", "query", "similar", "evaluate", "tune", "explore"]
MAIN_COMMANDS += ["split", "export", "predict", "demo"]


def _examples(command: Command) -> list[list[str]]:
    epilog = (command.epilog or "").replace("\\[", "[")
    assert epilog.startswith("Examples:"), "no Examples in the help page"
    return [shlex.split(line) for line in epilog.splitlines()[1:]]


@pytest.mark.parametrize("name", MAIN_COMMANDS)
def test_main_commands_show_examples_that_parse(name: str) -> None:
    command = COMMANDS[(name,)]
    examples = _examples(command)
    assert examples
    assert "Examples:" in _help((name,))
    for example in examples:
        assert example[:2] == ["rekko", name], example
        context = command.make_context(name, example[2:])  # flags, values and ranges check
        for pair in context.params.get("param") or []:
            model, _, assignment = pair.partition(".")
            key = assignment.partition("=")[0] if name == "evaluate" else model.partition("=")[0]
            model_name = model if name == "evaluate" else context.params["model"]
            assert key in get_model_class(model_name).Params.model_fields, example


@pytest.mark.parametrize("name", ["recommend", "query", "similar", "demo", "evaluate"])
def test_k_has_a_long_name(name: str) -> None:
    command = COMMANDS[(name,)]
    required = {"recommend": ["-m", "m"], "query": ["-m", "m"], "similar": ["-m", "m"]}
    extra = required.get(name, []) + (["--item", "i"] if name == "similar" else [])
    short = command.make_context(name, [*extra, "-k", "7"]).params["k"]
    long = command.make_context(name, [*extra, "--top-k", "7"]).params["k"]
    assert short == long and short in (7, (7,), [7])
