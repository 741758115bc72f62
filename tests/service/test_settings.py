"""Service settings: sources and their order, validation, and the exposure check."""

from __future__ import annotations

from pathlib import Path

import pytest

from rekko.service.runner import settings_json
from rekko.service.settings import ServeSettings, SettingsError, is_loopback, load_settings

STRONG = "k" * 32


def test_sources_in_order_defaults_toml_env_flags(tmp_path: Path) -> None:
    config = tmp_path / "rekko.toml"
    config.write_text(
        '[serve]\nport = 9000\nworkers = 3\nmodel = "ease"\ndatabase_url = "sqlite:///a.db"\n'
    )
    environ = {"REKKO_PORT": "9100", "REKKO_MODEL_PARAMS": '{"l2": 10}', "REKKO_DATASETS": "x"}
    settings = load_settings(config, flags={"port": 9200, "host": None}, environ=environ)
    assert settings.port == 9200  # flag beats env beats file
    assert settings.workers == 3  # file beats default
    assert settings.model == "ease"
    assert settings.model_params == {"l2": 10}  # JSON in the environment
    assert settings.host == "127.0.0.1"  # a None flag does not override


def test_unknown_or_invalid_settings_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="prot: unknown setting"):
        load_settings({"serve": {"prot": 1}}, environ={})
    with pytest.raises(SettingsError, match="port"):
        load_settings(flags={"port": 70000}, environ={})
    with pytest.raises(SettingsError, match="event_weights"):
        load_settings(flags={"event_weights": "view"}, environ={})
    with pytest.raises(SettingsError, match="REKKO_MODEL_PARAMS must be JSON"):
        load_settings(environ={"REKKO_MODEL_PARAMS": "{oops"})
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "missing.toml", environ={})


def test_keys_from_environment_and_empty_means_unset() -> None:
    settings = load_settings(environ={"REKKO_READ_KEY": "r" * 20, "REKKO_ADMIN_KEY": ""})
    assert settings.key("read") == "r" * 20
    assert settings.key("admin") is None
    assert "r" * 20 not in repr(settings)  # secrets never printed
    assert settings.public_dict()["read_key"] == "***"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.1.2.3", False),
        ("example.org", False),
    ],
)
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_refuses_public_bind_with_missing_or_placeholder_keys() -> None:
    ServeSettings(host="127.0.0.1").check_exposure()  # open on loopback is fine
    with pytest.raises(SettingsError, match="read_key is empty"):
        ServeSettings(host="0.0.0.0").check_exposure()
    with pytest.raises(SettingsError, match="events_key is empty or a placeholder"):
        ServeSettings(
            host="0.0.0.0", read_key=STRONG, events_key="changeme", admin_key=STRONG
        ).check_exposure()
    with pytest.raises(SettingsError, match="admin_key is shorter"):
        ServeSettings(
            host="0.0.0.0", read_key=STRONG, events_key=STRONG, admin_key="short-key"
        ).check_exposure()
    ServeSettings(
        host="0.0.0.0", read_key=STRONG, events_key=STRONG, admin_key=STRONG
    ).check_exposure()


def test_create_app_refuses_unsafe_settings(tmp_path: Path) -> None:
    from rekko.service import create_app

    with pytest.raises(SettingsError):
        create_app(ServeSettings(host="0.0.0.0", database_url=f"sqlite:///{tmp_path}/x.db"))


def test_settings_travel_to_workers_with_keys() -> None:
    settings = ServeSettings(read_key=STRONG, model_params={"factors": 8}, port=0)
    again = ServeSettings.model_validate_json(settings_json(settings))
    assert again.key("read") == STRONG
    assert again.model_params == {"factors": 8}
    assert again.port == 0
