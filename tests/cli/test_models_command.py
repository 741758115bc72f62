"""``rekko models``: every model with the defaults its parameters really take."""

from __future__ import annotations

from typer.testing import CliRunner

from rekko.cli import app
from rekko.models import available_models, get_model_class

runner = CliRunner()


def test_models_lists_the_defaults_a_model_is_built_with() -> None:
    result = runner.invoke(app, ["models"], env={"COLUMNS": "2000"})
    assert result.exit_code == 0, result.output
    assert "PydanticUndefined" not in result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if "│" in line}
    for name in available_models():
        defaults = get_model_class(name).Params()  # what fitting with no parameters uses
        for key in type(defaults).model_fields:
            assert f"{key}={getattr(defaults, key)!r}" in rows[name], (name, key)
