"""rekko.config: a rekko.toml's [data] and per-command tables merged with the flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from rekko.config import config_section, data_spec, read_config
from rekko.errors import DataError


def test_flags_win_over_the_data_table(tmp_path: Path) -> None:
    path = tmp_path / "rekko.toml"
    path.write_text('[data]\ninteractions = "events.csv"\nuser_col = "visitor"\n')
    config = read_config(path)
    spec = data_spec(config, {"interactions": "other.csv", "user_col": None, "item_col": "sku"})
    assert (spec.interactions, spec.user_col, spec.item_col) == ("other.csv", "visitor", "sku")
    assert read_config(None) == {}


def test_bad_settings_name_their_key(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="invalid data settings: colour: unknown key"):
        data_spec({"data": {"colour": "red"}}, {})
    with pytest.raises(DataError, match="config file not found"):
        read_config(tmp_path / "missing.toml")


def test_a_command_table_knows_its_keys() -> None:
    config = {"train": {"model": "als", "items": "items.csv"}, "evaluate": 3}
    with pytest.raises(DataError, match=r"unknown key\(s\) items in \[train\].*go in \[data\]"):
        config_section(config, "train", ("model", "output"))
    assert config_section(config, "train", ("model", "items")) == config["train"]
    assert config_section(config, "tune", ("model",)) == {}
    with pytest.raises(DataError, match=r"\[evaluate\] in the config must be a table"):
        config_section(config, "evaluate", ("models",))
