"""The in-memory data set every model trains on: interactions plus optional feature tables.

Data flows one way: a reader produces a plain ``pandas.DataFrame`` with external ids, and
:meth:`Dataset.from_frame` validates it (with the checks of :mod:`rekko.data.validation`, each
made once), maps ids once and aggregates duplicates. Models then only see integer indices and
the sparse user x item matrix, built once and cached.

Aggregation rule for repeated (user, item) pairs, applied once at construction:

* explicit ratings: the **last** rating wins (latest timestamp, then the later row);
* implicit events: the pair's weighted values are **summed** (``aggregate="sum"``, the default),
  or the largest is kept (``"max"``), or the latest (``"last"``);
* the pair keeps its latest timestamp, its strongest event type (largest weight) and the
  number of raw events in ``count``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from rekko.data import validation
from rekko.data.idmap import IdMap
from rekko.data.validation import Location
from rekko.errors import DataError

logger = logging.getLogger(__name__)

FeatureKind = Literal["categorical", "multi", "text", "numeric", "latitude", "longitude"]
Aggregate = Literal["sum", "max", "last"]
FEATURE_KINDS: tuple[str, ...] = (
    "categorical",
    "multi",
    "text",
    "numeric",
    "latitude",
    "longitude",
)
_NUMERIC_KINDS = ("numeric", "latitude", "longitude")

#: Column names of the frame :meth:`Dataset.from_frame` reads.
USER, ITEM, RATING, VALUE, EVENT, TIMESTAMP = (
    "user_id",
    "item_id",
    "rating",
    "value",
    "event",
    "timestamp",
)
#: The largest interaction value a dataset holds (a weighted event or a pair's sum). Models
#: keep values in float32 (at most about 3.4e38); this bound leaves room for sums and
#: products, so that no value becomes infinite there.
MAX_VALUE = 1e30


@dataclass(frozen=True)
class EventWeights:
    """How much each event type counts, e.g. ``view=1, addtocart=3, transaction=5``.

    An event type missing from ``weights`` is an error unless ``default`` is set.
    """

    weights: Mapping[str, float] = field(default_factory=dict)
    default: float | None = None

    def __post_init__(self) -> None:
        for name, weight in self.weights.items():
            if not np.isfinite(weight) or weight < 0:
                raise DataError(f"event weight for {name!r} must be a finite number >= 0")

    @classmethod
    def parse(cls, text: str) -> EventWeights:
        """Parse ``"view=1,addtocart=3,transaction=5"`` (``*=1`` sets the default)."""
        weights: dict[str, float] = {}
        default: float | None = None
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, number = part.partition("=")
            try:
                weight = float(number)
            except ValueError:
                weight = float("nan")
            if not sep or not name.strip() or not np.isfinite(weight):
                raise DataError(f"event weights: expected NAME=NUMBER, got {part!r}")
            if name.strip() == "*":
                default = weight
            else:
                weights[name.strip()] = weight
        return cls(weights, default)

    def weigh(
        self, events: pd.Series, *, source: str | Location | None = None
    ) -> npt.NDArray[np.float32]:
        """Weights of each event in ``events``; unknown types raise, naming the first row."""
        at = Location.of(source)
        return validation.weigh_events(events, self.weights, self.default, EVENT, at)


@dataclass(frozen=True)
class FeatureTable:
    """Features of users or items: one row per index of ``ids``, in index order.

    ``kinds`` says how each column is to be read: ``categorical`` (one label), ``multi``
    (a list of labels, such as genres or tags), ``text``, ``numeric``, ``latitude`` or
    ``longitude``. Rows of ids that had no features are missing values.
    """

    frame: pd.DataFrame
    kinds: Mapping[str, FeatureKind]

    @classmethod
    def build(
        cls,
        table: pd.DataFrame,
        id_column: str,
        ids: IdMap,
        kinds: Mapping[str, FeatureKind] | None = None,
        *,
        multi_separator: str = "|",
        source: str | Location | None = None,
    ) -> FeatureTable:
        """Check ``table`` (with external ids in ``id_column``) and align it to ``ids``.

        Kinds not given are inferred: numbers -> ``numeric``, strings -> ``categorical``
        (``text`` when most values have several words and are mostly distinct).
        """
        checked = _CheckedFeatures.of(table, id_column, kinds, Location.of(source))
        return checked.aligned(ids, multi_separator)

    def columns_of(self, *kinds: FeatureKind) -> list[str]:
        return [name for name, kind in self.kinds.items() if kind in kinds]

    def reindexed(self, size: int) -> FeatureTable:
        """The table grown to ``size`` rows (new ids appended to an id map have no features)."""
        if size == len(self.frame):
            return self
        frame = self.frame.reindex(pd.RangeIndex(size))
        for name in self.columns_of("multi"):
            frame[name] = [v if isinstance(v, tuple) else () for v in frame[name]]
        return FeatureTable(frame, self.kinds)


@dataclass(frozen=True)
class _CheckedFeatures:
    """A feature table that passed validation: the step between reading and aligning it.

    :meth:`Dataset.from_frame` checks its feature tables before building any id map, and
    aligns them after; :meth:`FeatureTable.build` does both at once.
    """

    table: pd.DataFrame
    id_column: str
    kinds: dict[str, FeatureKind]
    numbers: dict[str, npt.NDArray[np.float64]]

    @classmethod
    def of(
        cls,
        table: pd.DataFrame,
        id_column: str,
        kinds: Mapping[str, FeatureKind] | None,
        at: Location,
    ) -> _CheckedFeatures:
        """Check the kinds, ids and numeric columns of ``table``; infer the kinds not given."""
        table = table.reset_index(drop=True)
        kinds = dict(kinds or {})
        for name, kind in kinds.items():
            if name not in table.columns:
                raise DataError(f"feature column {name!r} not found", source=at.source)
            if kind not in FEATURE_KINDS:
                raise DataError(f"feature kind {kind!r} for {name!r} is not one of {FEATURE_KINDS}")
        columns = [c for c in table.columns if c != id_column]
        for name in columns:
            kinds.setdefault(name, _infer_kind(table[name]))
        numeric = {name: kinds[name] for name in columns if kinds[name] in _NUMERIC_KINDS}
        numbers = validation.check_features(table, id_column, numeric, at)
        return cls(table, id_column, {name: kinds[name] for name in columns}, numbers)

    def aligned(self, ids: IdMap, multi_separator: str) -> FeatureTable:
        """The features in the order of ``ids`` (which holds every id of the table)."""
        positions = ids.to_index(self.table[self.id_column], unknown="mark")
        frame = pd.DataFrame(index=pd.RangeIndex(len(ids)))
        keep = positions >= 0
        for name, kind in self.kinds.items():
            if name in self.numbers:
                column = np.full(len(ids), np.nan)
                column[positions[keep]] = self.numbers[name][keep]
                frame[name] = column
                continue
            values = self.table[name].astype(object)
            if kind == "multi":
                lists = pd.Series([_split_multi(v, multi_separator) for v in values], dtype=object)
                column_obj = np.empty(len(ids), dtype=object)
                column_obj[:] = [() for _ in range(len(ids))]
                column_obj[positions[keep]] = lists.to_numpy(dtype=object)[keep]
                frame[name] = pd.Series(column_obj, dtype=object)
            else:
                column_obj = np.full(len(ids), None, dtype=object)
                cleaned = pd.Series([None if _missing(v) else str(v) for v in values], dtype=object)
                column_obj[positions[keep]] = cleaned.to_numpy(dtype=object)[keep]
                frame[name] = pd.Series(column_obj, dtype=object)
        return FeatureTable(frame, self.kinds)


def _missing(value: Any) -> bool:
    if value is None or isinstance(value, (list, tuple, np.ndarray)):
        return value is None
    return bool(pd.isna(value))


def _split_multi(value: Any, separator: str) -> tuple[str, ...]:
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(str(v) for v in value if not _missing(v))
    if _missing(value) or value == "":
        return ()
    return tuple(part.strip() for part in str(value).split(separator) if part.strip())


def _infer_kind(values: pd.Series) -> FeatureKind:
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return "numeric"
    present = values.dropna().astype(str)
    if (
        len(present)
        and (present.str.count(" ") >= 2).mean() > 0.5
        and present.nunique() > 0.5 * len(present)
    ):
        return "text"
    return "categorical"


@dataclass(frozen=True, eq=False)
class Dataset:
    """Interactions between users and items, with optional feature tables.

    ``interactions`` has one row per (user, item) pair with integer columns ``user`` and
    ``item`` (indices into ``users`` and ``items``), ``value`` (float32: the rating for explicit
    data, the summed event weight for implicit data), ``count`` and, when the source had them,
    ``timestamp`` (int64 unix seconds) and ``event`` (the pair's strongest event type).
    Build one with :meth:`from_frame`; it is not meant to be mutated.
    """

    interactions: pd.DataFrame
    users: IdMap
    items: IdMap
    explicit: bool = False
    item_features: FeatureTable | None = None
    user_features: FeatureTable | None = None
    name: str = "dataset"

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        item_features: pd.DataFrame | None = None,
        user_features: pd.DataFrame | None = None,
        item_feature_kinds: Mapping[str, FeatureKind] | None = None,
        user_feature_kinds: Mapping[str, FeatureKind] | None = None,
        event_weights: EventWeights | Mapping[str, float] | None = None,
        aggregate: Aggregate = "sum",
        multi_separator: str = "|",
        users: IdMap | None = None,
        items: IdMap | None = None,
        name: str = "dataset",
        source: str | Location | None = None,
        item_features_source: str | Location | None = None,
        user_features_source: str | Location | None = None,
    ) -> Dataset:
        """Validate, map and aggregate a frame of raw interactions.

        ``frame`` has the columns ``user_id``, ``item_id`` and optionally ``rating`` (explicit
        feedback), ``value`` (an implicit strength, default 1), ``event`` (an event type,
        weighted by ``event_weights``) and ``timestamp`` (unix seconds or anything
        ``pandas.to_datetime`` reads). Feature tables have a ``user_id`` / ``item_id`` column.
        Items that only appear in ``item_features`` are part of the catalogue (cold items).
        Passing ``users`` / ``items`` extends those maps instead of building new ones, so indices
        stay stable across data versions.

        ``source`` and ``*_features_source`` say where the frames came from (a name, or a
        :class:`~rekko.data.validation.Location` that also numbers rows and names columns as
        the source does); errors name them. The data are checked before anything is built.
        """
        rows = check_rows(
            frame,
            item_features=item_features,
            user_features=user_features,
            item_feature_kinds=item_feature_kinds,
            user_feature_kinds=user_feature_kinds,
            event_weights=event_weights,
            name=name,
            source=source,
            item_features_source=item_features_source,
            user_features_source=user_features_source,
        )
        frame, explicit, values = rows.frame, rows.explicit, rows.values
        events, event_weight, timestamps = rows.events, rows.event_weight, rows.timestamps
        checked_items, checked_users = rows.items, rows.users

        item_ids = frame[ITEM]
        if checked_items is not None:
            item_ids = pd.concat([item_ids, checked_items.table[ITEM]], ignore_index=True)
        user_ids = frame[USER]
        if checked_users is not None:
            user_ids = pd.concat([user_ids, checked_users.table[USER]], ignore_index=True)
        user_map = users.extend(user_ids) if users is not None else IdMap.from_values(user_ids)
        item_map = items.extend(item_ids) if items is not None else IdMap.from_values(item_ids)

        raw = pd.DataFrame(
            {
                "user": user_map.to_index(frame[USER], what="user"),
                "item": item_map.to_index(frame[ITEM], what="item"),
                "value": values.astype(np.float64),
                "order": np.arange(len(frame)),
            }
        )
        if timestamps is not None:
            raw["timestamp"] = timestamps
        if events is not None:
            raw["event"] = events.to_numpy()
            raw["event_weight"] = event_weight
        interactions = _aggregate(raw, explicit=explicit, aggregate=aggregate)
        item_table = checked_items.aligned(item_map, multi_separator) if checked_items else None
        user_table = checked_users.aligned(user_map, multi_separator) if checked_users else None
        return cls(interactions, user_map, item_map, explicit, item_table, user_table, name)

    # -- views ----------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def has_timestamps(self) -> bool:
        return "timestamp" in self.interactions.columns

    def __len__(self) -> int:
        return len(self.interactions)

    def __repr__(self) -> str:
        kind = "explicit" if self.explicit else "implicit"
        return (
            f"Dataset({self.name!r}, {len(self)} {kind} interactions, "
            f"{self.n_users} users, {self.n_items} items)"
        )

    @cached_property
    def matrix(self) -> sp.csr_matrix:
        """The user x item matrix of ``value`` (float32, CSR), built once."""
        return sp.csr_matrix(
            (
                self.interactions["value"].to_numpy(dtype=np.float32),
                (
                    self.interactions["user"].to_numpy(),
                    self.interactions["item"].to_numpy(),
                ),
            ),
            shape=(self.n_users, self.n_items),
            dtype=np.float32,
        )

    @cached_property
    def item_popularity(self) -> npt.NDArray[np.int64]:
        """Number of distinct users per item."""
        return np.bincount(self.interactions["item"].to_numpy(), minlength=self.n_items)

    def fingerprint(self) -> str:
        """A short content hash of the interactions and id maps (for model metadata)."""
        digest = hashlib.sha256()
        for column in ("user", "item", "value"):
            digest.update(np.ascontiguousarray(self.interactions[column].to_numpy()).tobytes())
        digest.update(str(len(self.users)).encode())
        digest.update(str(len(self.items)).encode())
        return digest.hexdigest()[:16]

    def summary(self) -> dict[str, Any]:
        """Counts a person wants to see first."""
        n = len(self)
        cells = max(self.n_users * self.n_items, 1)
        per_user = np.bincount(self.interactions["user"].to_numpy(), minlength=self.n_users)
        return {
            "name": self.name,
            "interactions": n,
            "users": self.n_users,
            "items": self.n_items,
            "explicit": self.explicit,
            "density": n / cells,
            "users_without_interactions": int((per_user == 0).sum()),
            "items_without_interactions": int((self.item_popularity == 0).sum()),
            "has_timestamps": self.has_timestamps,
            "event_types": sorted(self.interactions["event"].unique().tolist())
            if "event" in self.interactions.columns
            else [],
        }

    # -- derived data sets ----------------------------------------------------------------
    def subset(
        self, rows: npt.NDArray[np.bool_] | npt.NDArray[np.int64], name: str = ""
    ) -> Dataset:
        """The same users, items and features with only some interaction rows."""
        chosen = self.interactions.iloc[rows] if rows.dtype != np.bool_ else self.interactions[rows]
        return Dataset(
            chosen.reset_index(drop=True),
            self.users,
            self.items,
            self.explicit,
            self.item_features,
            self.user_features,
            name or self.name,
        )

    def to_frame(self) -> pd.DataFrame:
        """Interactions with external ids (``user_id``, ``item_id``, ``rating``/``value``...)."""
        out = pd.DataFrame(
            {
                USER: self.users.to_external(self.interactions["user"].to_numpy()),
                ITEM: self.items.to_external(self.interactions["item"].to_numpy()),
                RATING if self.explicit else VALUE: self.interactions["value"].to_numpy(),
            }
        )
        for column in ("event", "timestamp"):
            if column in self.interactions.columns:
                out[column] = self.interactions[column].to_numpy()
        return out


def _bounded(values: npt.NDArray[np.float64], at: Location) -> npt.NDArray[np.float64]:
    """Values above :data:`MAX_VALUE` (a weight may make one infinite) clipped to it."""
    large = ~(values <= MAX_VALUE)
    if large.any():
        logger.warning(
            "%s: %d value(s) above %g clipped to it (the first in row %d)",
            at.source or "interactions",
            int(large.sum()),
            MAX_VALUE,
            at.row(int(np.flatnonzero(large)[0])),
        )
        values = np.where(large, MAX_VALUE, values)
    return values


def _aggregate(raw: pd.DataFrame, *, explicit: bool, aggregate: Aggregate) -> pd.DataFrame:
    """One row per (user, item), sorted by user then item (see the module docstring)."""
    if aggregate not in ("sum", "max", "last"):
        raise DataError(f"aggregate must be 'sum', 'max' or 'last', got {aggregate!r}")
    user = raw["user"].to_numpy(dtype=np.int64)
    item = raw["item"].to_numpy(dtype=np.int64)
    order = raw["order"].to_numpy(dtype=np.int64)
    has_time = "timestamp" in raw.columns
    time = raw["timestamp"].to_numpy(dtype=np.int64) if has_time else order
    # Chronological within each pair: the last row of a group is the pair's latest event.
    sorted_rows = np.lexsort((order, time, item, user))
    user_s, item_s = user[sorted_rows], item[sorted_rows]
    new_pair = np.r_[True, (user_s[1:] != user_s[:-1]) | (item_s[1:] != item_s[:-1])]
    starts = np.flatnonzero(new_pair)
    ends = np.r_[starts[1:], len(sorted_rows)] - 1
    values = raw["value"].to_numpy(dtype=np.float64)[sorted_rows]
    if explicit or aggregate == "last":
        value = values[ends]
    elif aggregate == "max":
        value = np.maximum.reduceat(values, starts)
    else:
        value = np.minimum(np.add.reduceat(values, starts), MAX_VALUE)
    result = pd.DataFrame(
        {
            "user": user_s[starts],
            "item": item_s[starts],
            "value": value.astype(np.float32),
            "count": (ends - starts + 1).astype(np.int64),
        }
    )
    if has_time:
        result["timestamp"] = time[sorted_rows][ends]
    else:
        # Without times, the source row of the pair's latest event orders interactions.
        result["sequence"] = order[sorted_rows][ends]
    if "event" in raw.columns:
        weight = raw["event_weight"].to_numpy(dtype=np.float64)
        strongest = np.lexsort((order, weight, item, user))
        result["event"] = raw["event"].to_numpy()[strongest][ends]
    return result


@dataclass(frozen=True, eq=False)
class CheckedRows:
    """The rows of an interactions frame after every check of :meth:`Dataset.from_frame`,
    before ids are mapped and pairs aggregated: one entry per row, in the frame's order."""

    frame: pd.DataFrame  # the frame, index reset
    explicit: bool  # it has ratings
    given: npt.NDArray[np.float64]  # the rating or value as given (1 when neither)
    values: npt.NDArray[np.float64]  # weighted by event type (implicit data) and bounded
    events: pd.Series | None  # checked event types
    event_weight: npt.NDArray[Any] | None
    timestamps: npt.NDArray[np.int64] | None  # unix seconds
    items: _CheckedFeatures | None
    users: _CheckedFeatures | None


def check_rows(
    frame: pd.DataFrame,
    *,
    item_features: pd.DataFrame | None = None,
    user_features: pd.DataFrame | None = None,
    item_feature_kinds: Mapping[str, FeatureKind] | None = None,
    user_feature_kinds: Mapping[str, FeatureKind] | None = None,
    event_weights: EventWeights | Mapping[str, float] | None = None,
    name: str = "dataset",
    source: str | Location | None = None,
    item_features_source: str | Location | None = None,
    user_features_source: str | Location | None = None,
) -> CheckedRows:
    """Every check of :meth:`Dataset.from_frame` (same arguments), without building the
    data set: a :class:`DataError` names the first bad row, column and source."""
    at = Location.of(source)
    for column in (USER, ITEM):
        if column not in frame.columns:
            raise DataError(
                f"missing column {column!r} (columns found: {list(frame.columns)}); map your "
                "columns with the column options",
                source=at.source,
            )
    if frame.empty:
        raise DataError("no interactions (the data is empty)", source=at.source)
    # Feature tables first, as when their files are read before the interactions' values.
    base = at.source or name
    checked_items = (
        _CheckedFeatures.of(
            item_features,
            ITEM,
            item_feature_kinds,
            Location.of(item_features_source or f"{base} item features"),
        )
        if item_features is not None
        else None
    )
    checked_users = (
        _CheckedFeatures.of(
            user_features,
            USER,
            user_feature_kinds,
            Location.of(user_features_source or f"{base} user features"),
        )
        if user_features is not None
        else None
    )
    frame = frame.reset_index(drop=True)
    for column in (USER, ITEM):
        validation.check_ids(frame[column], column, at)
    explicit = RATING in frame.columns
    if explicit:
        values = validation.check_numbers(frame[RATING], RATING, at)
    elif VALUE in frame.columns:
        values = validation.check_numbers(frame[VALUE], VALUE, at)
    else:
        values = np.ones(len(frame), dtype=np.float64)
    given = values
    events: pd.Series | None = None
    event_weight: npt.NDArray[Any] = np.ones(len(frame), dtype=np.float64)
    if EVENT in frame.columns:
        events = validation.check_events(frame[EVENT], EVENT, at)
        weights = (
            event_weights
            if isinstance(event_weights, EventWeights)
            else EventWeights(dict(event_weights or {}), None if event_weights else 1.0)
        )
        event_weight = weights.weigh(events, source=at)
        if not explicit:
            with np.errstate(over="ignore"):  # clipped below
                values = values * event_weight
    values = _bounded(values, at)
    timestamps: npt.NDArray[np.int64] | None = None
    if TIMESTAMP in frame.columns:
        timestamps = validation.parse_timestamps(frame[TIMESTAMP], source=at, column=TIMESTAMP)
    return CheckedRows(
        frame,
        explicit,
        given,
        values,
        events,
        event_weight if events is not None else None,
        timestamps,
        checked_items,
        checked_users,
    )
