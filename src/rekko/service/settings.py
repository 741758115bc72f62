"""Settings of the HTTP service, from defaults < ``rekko.toml`` ``[serve]`` < ``REKKO_*``
environment variables < command-line flags.

Every field can be set in all three places under the same name: ``database_url`` is
``database_url = "..."`` in ``[serve]``, ``REKKO_DATABASE_URL`` in the environment and
``--database-url`` on the command line. Lists and tables are JSON in the environment
(``REKKO_MODEL_PARAMS='{"factors": 64}'``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from rekko.config import DataSpec
from rekko.data.dataset import EventWeights, FeatureKind
from rekko.errors import DataError, RekkoError

ENV_PREFIX = "REKKO_"
#: Keys that must never guard a service reachable from other machines.
PLACEHOLDER_KEYS = frozenset(
    {
        "",
        "changeme",
        "change-me",
        "change_me",
        "secret",
        "password",
        "placeholder",
        "apikey",
        "api-key",
        "api_key",
        "key",
        "test",
        "dev",
        "admin",
        "xxx",
        "todo",
        "none",
        "null",
    }
)
MIN_KEY_LENGTH = 16
#: Offline metrics the quality gate can use: a ranking metric at a cut-off.
GATE_METRIC = re.compile(r"^(precision|recall|ndcg|map|mrr|hit_rate)@([1-9][0-9]*)$")
Scope = Literal["read", "events", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "events", "admin")


class SettingsError(RekkoError, ValueError):
    """Settings that are invalid or unsafe; the message names the setting."""


class ServeSettings(BaseModel):
    """Everything ``rekko serve`` and :func:`rekko.service.create_app` need."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), validate_default=True)

    # -- network ---------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address to bind; loopback unless keys are set.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0: any free port).")
    workers: int = Field(1, ge=1, le=64, description="Worker processes (uvicorn).")
    # -- storage ---------------------------------------------------------------------------
    database_url: str = Field(
        "sqlite:///rekko-data/rekko.db",
        description="SQLAlchemy URL: sqlite:///file.db, postgresql+psycopg://..., "
        "mysql+pymysql://...",
    )
    model_dir: Path = Field(Path("rekko-data/models"), description="Model registry folder.")
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL", description="FULL survives power loss; NORMAL only a crash of the process."
    )
    # -- keys ------------------------------------------------------------------------------
    read_key: SecretStr | None = Field(None, description="Key for recommendations and reads.")
    events_key: SecretStr | None = Field(None, description="Key for posting feedback events.")
    admin_key: SecretStr | None = Field(
        None, description="Key for the catalogue, training and model versions (also allows all)."
    )
    # -- models and training ---------------------------------------------------------------
    model: str = Field("hybrid", description="Algorithm that training jobs fit.")
    model_params: dict[str, Any] = Field(
        default_factory=dict, description="Hyperparameters of that algorithm."
    )
    event_weights: str = Field(
        "view=1,addtocart=3,transaction=5,*=1",
        description="Weight of each event type; '*=N' accepts other types with weight N.",
    )
    item_feature_kinds: dict[str, FeatureKind] = Field(
        default_factory=dict,
        description="Kinds of item features (inferred when not given: lists are 'multi', "
        "latitude/longitude by name).",
    )
    holdout_fraction: float = Field(0.2, gt=0, lt=1, description="Recent events held out.")
    gate_metric: str = Field("ndcg@10", description="Offline metric that gates activation.")
    gate_tolerance: float = Field(
        0.0, ge=0, description="A new version may be this much worse (absolute) and still win."
    )
    retrain_interval_s: float | None = Field(None, gt=0, description="Retrain on a schedule.")
    retrain_after_events: int | None = Field(None, ge=1, description="Retrain after N events.")
    retrain_cooldown_s: float = Field(
        30.0, ge=0, description="No automatic retraining sooner than this after the last job."
    )
    training_executor: Literal["process", "thread"] = Field(
        "process", description="Train in a separate process (keeps serving fast) or a thread."
    )
    training_timeout_s: float = Field(
        3600.0, gt=0, description="A training job running longer than this is abandoned."
    )
    data: DataSpec | None = Field(
        None,
        description="The team's own data, imported on start (once; a changed source imports "
        "only its new rows): the [data] settings of rekko train (interactions file or database "
        "URL with table / query, items, users, columns).",
    )
    follow: str | None = Field(
        None,
        description="Follow the data's database table: take in new rows as events, by this "
        "column that only grows (an id or a time).",
    )
    model_path: Path | None = Field(
        None,
        description="A model folder written by rekko train / tune, registered as a version on "
        "start (once) and activated if it passes the quality gate.",
    )
    training_lease_s: float = Field(
        90.0,
        gt=0,
        description="A killed process's training lease lapses this long after it was last "
        "renewed (every quarter of it): then another instance trains, and its jobs read failed.",
    )
    bootstrap_demo: bool = Field(
        True,
        description="On an empty database and without data, load the demo shop, train and "
        "serve it.",
    )
    demo_users: int = Field(600, ge=10, description="Size of the demo shop (users).")
    demo_items: int = Field(400, ge=10, description="Size of the demo shop (items).")
    # -- limits ----------------------------------------------------------------------------
    max_k: int = Field(100, ge=1, le=10_000, description="Most items one list may ask for.")
    max_batch: int = Field(10_000, ge=1, description="Most events or catalogue rows per call.")
    max_body_bytes: int = Field(8 * 2**20, ge=1024, description="Largest request body (413 above).")
    max_in_flight: int = Field(
        64,
        ge=1,
        description="Requests one worker takes on at once; more are answered 503 with "
        "Retry-After at once instead of queueing (/health, /ready and /metrics always answer).",
    )
    # -- online evaluation and housekeeping ------------------------------------------------
    log_impressions: bool = Field(True, description="Record which items were shown to whom.")
    impression_sample_rate: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="Share of users (by hashed id) whose impressions are recorded.",
    )
    followup_window_s: float = Field(
        86_400.0, gt=0, description="An event this soon after an impression follows it."
    )
    positive_events: list[str] | None = Field(
        None, description="Event types that count as a follow-up (all when not set)."
    )
    sync_interval_s: float = Field(
        1.0, gt=0, description="How often a worker picks up other workers' events and changes."
    )
    docs: bool = Field(True, description="Serve OpenAPI docs at /docs.")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "info", description="Log level of the server."
    )

    @field_validator("event_weights")
    @classmethod
    def _weights(cls, value: str) -> str:
        try:
            EventWeights.parse(value)
        except DataError as error:
            raise ValueError(str(error)) from None
        return value

    @field_validator("gate_metric")
    @classmethod
    def _gate_metric(cls, value: str) -> str:
        if not GATE_METRIC.match(value):
            raise ValueError(
                "expected a ranking metric at a cut-off: precision, recall, ndcg, map, mrr or "
                f"hit_rate, then @K (e.g. ndcg@10), got {value!r}"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _url(cls, value: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(value)
        except ArgumentError:
            raise ValueError(f"not a database URL: {value!r}") from None
        return value

    @field_validator("read_key", "events_key", "admin_key", mode="before")
    @classmethod
    def _empty_key(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _follow_needs_a_table(self) -> ServeSettings:
        if self.follow is None:
            return self
        data = self.data
        if data is None or data.interactions is None or data.table is None:
            raise ValueError(
                "follow needs data from a database table: --interactions URL --table NAME"
            )
        from rekko.data.readers import is_database_url

        if not is_database_url(data.interactions):
            raise ValueError("follow needs --interactions to be a database URL, not a file")
        return self

    # -- derived ---------------------------------------------------------------------------
    def weights(self) -> EventWeights:
        return EventWeights.parse(self.event_weights)

    def key(self, scope: Scope) -> str | None:
        secret = {"read": self.read_key, "events": self.events_key, "admin": self.admin_key}[scope]
        return None if secret is None else secret.get_secret_value()

    @property
    def is_loopback(self) -> bool:
        return is_loopback(self.host)

    def check_exposure(self) -> None:
        """Refuse keys that are missing or placeholders when bound beyond loopback."""
        if self.is_loopback:
            return
        problems = []
        for scope in SCOPES:
            key = self.key(scope)
            if key is None or key.strip().lower() in PLACEHOLDER_KEYS:
                problems.append(f"{scope}_key is empty or a placeholder")
            elif len(key) < MIN_KEY_LENGTH:
                problems.append(f"{scope}_key is shorter than {MIN_KEY_LENGTH} characters")
        if problems:
            raise SettingsError(
                f"refusing to listen on {self.host} (not a loopback address): "
                + "; ".join(problems)
                + ". Set REKKO_READ_KEY, REKKO_EVENTS_KEY and REKKO_ADMIN_KEY to long random "
                "values (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)."
            )

    def public_dict(self) -> dict[str, Any]:
        """The settings with keys masked (for logs and the /admin view)."""
        from rekko.data.readers import is_database_url, redact_url

        values = self.model_dump(mode="json")
        for scope in SCOPES:
            values[f"{scope}_key"] = "***" if self.key(scope) else None
        values["database_url"] = redact_url(self.database_url)
        data = values.get("data")
        if data is not None:
            for name in ("interactions", "items", "users"):
                if data.get(name) is not None and is_database_url(data[name]):
                    data[name] = redact_url(data[name])
        return values


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, field in ServeSettings.model_fields.items():
        raw = environ.get(f"{ENV_PREFIX}{name.upper()}")
        if raw is None:
            continue
        annotation = str(field.annotation)
        if "dict" in annotation or "list" in annotation or "DataSpec" in annotation:
            try:
                values[name] = json.loads(raw) if raw.strip() else None
            except json.JSONDecodeError as error:
                raise SettingsError(
                    f"{ENV_PREFIX}{name.upper()} must be JSON ({error.msg})"
                ) from None
        elif raw == "" and field.default is None:
            values[name] = None
        else:
            values[name] = raw
    return values


def load_settings(
    config: str | Path | Mapping[str, Any] | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServeSettings:
    """Settings from a ``rekko.toml`` (path or parsed mapping; its ``[serve]`` table), the
    environment (``REKKO_*``; ``os.environ`` by default) and flags (``None`` values ignored),
    later sources winning. Raises :class:`SettingsError` naming the bad setting."""
    if config is None:
        table: Mapping[str, Any] = {}
    elif isinstance(config, Mapping):
        table = config.get("serve", {})
    else:
        try:
            with Path(config).open("rb") as handle:
                table = tomllib.load(handle).get("serve", {})
        except FileNotFoundError:
            raise SettingsError(f"{config}: config file not found") from None
        except tomllib.TOMLDecodeError as error:
            raise SettingsError(f"{config}: not valid TOML ({error})") from None
    if not isinstance(table, Mapping):
        raise SettingsError("[serve] in the config must be a table")
    values: dict[str, Any] = dict(table)
    values.update(_from_env(os.environ if environ is None else environ))
    values.update({key: value for key, value in (flags or {}).items() if value is not None})
    try:
        return ServeSettings(**values)
    except ValidationError as error:
        raise SettingsError("invalid serve settings: " + _describe(error)) from None


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "settings"
        message = "unknown setting" if item["type"] == "extra_forbidden" else item["msg"]
        parts.append(f"{where}: {message}")
    return "; ".join(parts)
