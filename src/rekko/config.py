"""Where the data comes from, as the CLI flags and ``rekko.toml`` describe it.

A ``rekko.toml`` holds the same keys as the command-line flags (with ``_`` for ``-``),
in a ``[data]`` table shared by all commands and one table per command::

    [data]
    interactions = "events.csv"
    items = "items.csv"
    event_weights = "view=1,addtocart=3,transaction=5"

    [train]
    model = "als"
    output = "models/als"
    params = { factors = 64 }

Flags given on the command line win over the file.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rekko.data.dataset import FEATURE_KINDS, Dataset, EventWeights, FeatureKind
from rekko.errors import DataError

if TYPE_CHECKING:
    from rekko.data.readers import ColumnMap, RawData

BUILTIN_DEMO = "demo"


@dataclass(frozen=True)
class DataOption:
    """A data setting offered as a command-line flag: its ``[data]`` key, help and short flag.

    ``features`` marks the settings of item and user feature tables, which commands that read
    interactions only do not offer.
    """

    name: str
    help: str
    short: str | None = None
    features: bool = False

    @property
    def flags(self) -> tuple[str, ...]:
        """The flag names: ``--user-col`` for ``user_col``, then the short flag if any."""
        flag = "--" + self.name.replace("_", "-")
        return (flag,) if self.short is None else (flag, self.short)


#: The data flags, each declared here and only here; every command that reads data offers the
#: ones it uses (see ``rekko.cli``). Each name is a :class:`DataSpec` field and a ``[data]`` key.
DATA_OPTIONS: tuple[DataOption, ...] = (
    DataOption("dataset", "Built-in data set: demo, movielens-100k, fiverr, seefud..."),
    DataOption("data_dir", "Folder with a built-in data set's files."),
    DataOption("interactions", "Interactions: CSV/Parquet path or SQLAlchemy URL.", short="-i"),
    DataOption("table", "SQL table of interactions."),
    DataOption("query", "SQL query of interactions."),
    DataOption("items", "Item features file.", features=True),
    DataOption("users", "User features file.", features=True),
    DataOption("user_col", "Column of user ids."),
    DataOption("item_col", "Column of item ids."),
    DataOption("rating_col", "Column of explicit ratings."),
    DataOption("value_col", "Column of implicit strengths."),
    DataOption("event_col", "Column of event types."),
    DataOption("timestamp_col", "Column of times."),
    DataOption("event_weights", "Event weights, e.g. view=1,addtocart=3,transaction=5."),
    DataOption(
        "item_kinds",
        "Kinds of --items columns, e.g. price=numeric,tags=multi (the rest are inferred).",
        features=True,
    ),
    DataOption("user_kinds", "Kinds of --users columns, e.g. age=numeric.", features=True),
)
#: The data flags of the interactions alone (no feature tables).
INTERACTION_OPTIONS = tuple(option.name for option in DATA_OPTIONS if not option.features)


class DataSpec(BaseModel):
    """A data source: a built-in data set, or files / a SQL table with a column mapping."""

    model_config = ConfigDict(extra="forbid")

    dataset: str | None = Field(
        default=None, description="A built-in data set: demo, movielens-100k, fiverr, seefud..."
    )
    data_dir: str | None = Field(
        default=None, description="Folder of a built-in data set's files (not needed for demo)."
    )
    interactions: str | None = Field(
        default=None, description="Interactions: a CSV/Parquet path or a SQLAlchemy URL."
    )
    table: str | None = None
    query: str | None = None
    items: str | None = None
    users: str | None = None
    user_col: str | None = None
    item_col: str | None = None
    rating_col: str | None = None
    value_col: str | None = None
    event_col: str | None = None
    timestamp_col: str | None = None
    item_id_col: str | None = Field(
        default=None, description="Id column of --items (default: item_id, else the item column)."
    )
    user_id_col: str | None = Field(
        default=None, description="Id column of --users (default: user_id, else the user column)."
    )
    event_weights: str | None = None
    item_kinds: str | dict[str, str] | None = Field(
        default=None, description="Kinds of item feature columns: price=numeric,tags=multi."
    )
    user_kinds: str | dict[str, str] | None = Field(
        default=None, description="Kinds of user feature columns: age=numeric."
    )
    aggregate: Literal["sum", "max", "last"] = "sum"

    def load(self) -> Dataset:
        """Read and validate the data (raises :class:`DataError` with file/row/column)."""
        self._check_kinds()
        if self.dataset is not None:
            if self.interactions is not None:
                raise DataError("give either a built-in dataset or --interactions, not both")
            if self.dataset == BUILTIN_DEMO:
                from rekko.data.demo import load_demo

                return load_demo()
            from rekko.data.loaders import load_builtin

            folder = Path(self.data_dir) if self.data_dir is not None else _cached(self.dataset)
            weights = EventWeights.parse(self.event_weights) if self.event_weights else None
            return load_builtin(self.dataset, folder, event_weights=weights)
        return self.read().to_dataset(
            item_feature_kinds=self.item_feature_kinds(),
            user_feature_kinds=self.user_feature_kinds(),
            event_weights=EventWeights.parse(self.event_weights) if self.event_weights else None,
            aggregate=self.aggregate,
        )

    def read(self) -> RawData:
        """The rows of an ``interactions`` source (and feature files), read but not checked:
        :meth:`RawData.to_dataset` checks them. Built-in data sets have no raw rows."""
        self._check_kinds()
        if self.dataset is not None:
            raise DataError(
                f"the built-in data set {self.dataset!r} has no raw rows to read: give "
                "--interactions (a file, folder, glob or database URL)"
            )
        if self.interactions is None:
            raise DataError("no data: give --interactions PATH (or --dataset demo)")
        from rekko.data.readers import read_data

        return read_data(
            self.interactions,
            items=self.items,
            users=self.users,
            columns=self.columns(),
            item_id_column=self.item_id_col,
            user_id_column=self.user_id_col,
            item_feature_kinds=self.item_feature_kinds(),
            user_feature_kinds=self.user_feature_kinds(),
            table=self.table,
            query=self.query,
        )

    def item_feature_kinds(self) -> dict[str, FeatureKind] | None:
        return _kinds(self.item_kinds, "item_kinds")

    def user_feature_kinds(self) -> dict[str, FeatureKind] | None:
        return _kinds(self.user_kinds, "user_kinds")

    def _check_kinds(self) -> None:
        for kinds, source, flag in (
            (self.item_kinds, self.items, "items"),
            (self.user_kinds, self.users, "users"),
        ):
            if kinds is not None and (source is None or self.dataset is not None):
                raise DataError(f"--{flag[:-1]}-kinds describes the columns of a --{flag} file")

    def feature_settings(self) -> list[str]:
        """The feature-table settings given (``items``, ``user_kinds``...), in flag order."""
        return [
            option.name
            for option in DATA_OPTIONS
            if option.features and getattr(self, option.name) is not None
        ]

    def columns(self) -> ColumnMap:
        """The column mapping of the interactions source (unnamed fields keep the defaults)."""
        from rekko.data.readers import ColumnMap

        mapping = {
            "user": self.user_col,
            "item": self.item_col,
            "rating": self.rating_col,
            "value": self.value_col,
            "event": self.event_col,
            "timestamp": self.timestamp_col,
        }
        return ColumnMap(**{key: value for key, value in mapping.items() if value is not None})


def _kinds(value: str | dict[str, str] | None, name: str) -> dict[str, FeatureKind] | None:
    """``"price=numeric,tags=multi"`` (or a table) as feature kinds, each one checked."""
    if value is None:
        return None
    pairs: dict[str, str] = {}
    if isinstance(value, str):
        for part in value.split(","):
            column, sep, kind = part.partition("=")
            if not sep or not column.strip():
                raise DataError(f"{name} expects column=kind pairs, got {part.strip()!r}")
            pairs[column.strip()] = kind.strip()
    else:
        pairs = {str(column): str(kind) for column, kind in value.items()}
    for column, kind in pairs.items():
        if kind not in FEATURE_KINDS:
            raise DataError(
                f"{name}: kind of {column!r} must be one of {', '.join(FEATURE_KINDS)}, got "
                f"{kind!r}"
            )
    return cast(dict[str, FeatureKind], pairs)


#: Built-in data sets that ``rekko datasets download`` puts in the cache, by cache folder.
CACHED = {"movielens-100k": "ml-100k"}


def _cached(dataset: str) -> Path:
    """The cached copy of a downloadable built-in data set, else an error saying what to do."""
    from rekko.data.download import default_cache_dir

    variant = CACHED.get(dataset)
    if variant is not None:
        folder = default_cache_dir() / variant
        if folder.is_dir():
            return folder
        raise DataError(
            f"data set {dataset!r} is not in the cache ({folder}): run `rekko datasets download "
            f"{variant}` once, or give --data-dir (its files' folder)"
        )
    from rekko.data.loaders import DATASETS
    from rekko.data.readers import closest_column

    if dataset not in DATASETS:
        known = ["demo", *DATASETS]
        suggestion = closest_column(dataset, known)
        hint = f"; did you mean {suggestion!r}?" if suggestion else ""
        raise DataError(f"unknown data set {dataset!r} (known: {', '.join(known)}){hint}")
    raise DataError(f"data set {dataset!r} needs --data-dir (its files' folder)")


def read_config(path: Path | None) -> dict[str, Any]:
    """The parsed ``rekko.toml`` (``{}`` when no path is given)."""
    if path is None:
        return {}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise DataError("config file not found", source=str(path)) from None
    except tomllib.TOMLDecodeError as error:
        raise DataError(f"not valid TOML ({error})", source=str(path)) from None


def config_section(config: dict[str, Any], name: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """The ``[name]`` table of the config; keys it does not know are an error, not ignored."""
    section = config.get(name, {})
    if not isinstance(section, dict):
        raise DataError(f"[{name}] in the config must be a table")
    unknown = sorted(set(section) - set(keys))
    if unknown:
        data_keys = {option.name for option in DATA_OPTIONS}
        where = " (data settings go in [data])" if set(unknown) & data_keys else ""
        raise DataError(
            f"unknown key(s) {', '.join(unknown)} in [{name}] of the config{where}; "
            f"known: {', '.join(keys)}"
        )
    return section


def data_spec(config: dict[str, Any], flags: dict[str, Any]) -> DataSpec:
    """The data spec from the config's ``[data]`` table overridden by the given flags."""
    values = dict(config.get("data", {}))
    values.update({key: value for key, value in flags.items() if value is not None})
    try:
        return DataSpec(**values)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: "
            + ("unknown key" if e["type"] == "extra_forbidden" else e["msg"])
            for e in error.errors()
        )
        raise DataError(f"invalid data settings: {problems}") from None
