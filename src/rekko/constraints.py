"""Knowledge-based constraints over item attributes, usable with every model.

A constraint turns an item feature table into a boolean mask over the catalogue. Models apply
the mask *before* taking the top K, so a user still gets K items whenever K items qualify.

Constraints are written in code (``Range("price", high=50)``) or as a JSON-like mapping, the
form the CLI and the HTTP API take (see :func:`parse_constraints`)::

    {"gig_design_style": "anime",                 # equality
     "genres": ["Comedy", "Drama"],               # membership (any of; for tag lists: overlap)
     "price": {"max": 50},                        # numeric range, inclusive
     "near": {"lat": -6.2, "lon": 106.8, "km": 10}}  # distance from a point
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from rekko.data.dataset import FeatureTable
from rekko.errors import DataError

EARTH_RADIUS_KM = 6371.0088


class Constraint(Protocol):
    """Anything that selects items from a feature table."""

    def mask(self, features: FeatureTable) -> npt.NDArray[np.bool_]: ...


def _column(features: FeatureTable, name: str) -> pd.Series:
    if name not in features.frame.columns:
        known = ", ".join(features.frame.columns)
        raise DataError(f"constraint names unknown item feature {name!r} (known: {known})")
    return features.frame[name]


def _normalise(value: Any) -> str:
    return str(value).strip().casefold()


@dataclass(frozen=True)
class OneOf:
    """The feature equals one of ``values`` (for tag lists: shares at least one tag).

    Text comparison ignores case and surrounding spaces.
    """

    column: str
    values: tuple[Any, ...]

    def mask(self, features: FeatureTable) -> npt.NDArray[np.bool_]:
        series = _column(features, self.column)
        kind = features.kinds[self.column]
        if kind in ("numeric", "latitude", "longitude"):
            try:
                wanted = np.asarray([float(v) for v in self.values])
            except (TypeError, ValueError) as error:
                raise DataError(f"feature {self.column!r} is numeric; {self.values!r}") from error
            found: npt.NDArray[np.bool_] = np.isin(series.to_numpy(dtype=float), wanted)
            return found
        wanted_text = {_normalise(v) for v in self.values}
        if kind == "multi":
            return np.fromiter(
                (any(_normalise(tag) in wanted_text for tag in tags) for tags in series),
                dtype=bool,
                count=len(series),
            )
        return np.fromiter(
            (value is not None and _normalise(value) in wanted_text for value in series),
            dtype=bool,
            count=len(series),
        )


def Equals(column: str, value: Any) -> OneOf:  # noqa: N802 - reads like the constraint it builds
    """The feature equals ``value``."""
    return OneOf(column, (value,))


@dataclass(frozen=True)
class Range:
    """``low <= feature <= high`` (either bound may be omitted); missing values never qualify."""

    column: str
    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        if self.low is None and self.high is None:
            raise DataError(f"range on {self.column!r} needs a min or a max")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise DataError(f"range on {self.column!r}: min {self.low} is above max {self.high}")

    def mask(self, features: FeatureTable) -> npt.NDArray[np.bool_]:
        series = _column(features, self.column)
        if features.kinds[self.column] not in ("numeric", "latitude", "longitude"):
            raise DataError(f"range on {self.column!r}, which is not a numeric feature")
        values = series.to_numpy(dtype=float)
        keep: npt.NDArray[np.bool_] = ~np.isnan(values)
        if self.low is not None:
            keep &= values >= self.low
        if self.high is not None:
            keep &= values <= self.high
        return keep


@dataclass(frozen=True)
class Within:
    """Great-circle distance from (``latitude``, ``longitude``) of at most ``km`` kilometres.

    Uses the table's ``latitude`` and ``longitude`` feature columns.
    """

    latitude: float
    longitude: float
    km: float

    def __post_init__(self) -> None:
        if not -90 <= self.latitude <= 90 or not -180 <= self.longitude <= 180:
            raise DataError("'near' needs lat in [-90, 90] and lon in [-180, 180]")
        if not self.km >= 0:
            raise DataError("'near' needs km >= 0")

    def mask(self, features: FeatureTable) -> npt.NDArray[np.bool_]:
        return distances_km(features, self.latitude, self.longitude) <= self.km


def distances_km(
    features: FeatureTable, latitude: float, longitude: float
) -> npt.NDArray[np.float64]:
    """Haversine distance of every item from a point (NaN where coordinates are missing)."""
    lat_columns = features.columns_of("latitude")
    lon_columns = features.columns_of("longitude")
    if not lat_columns or not lon_columns:
        raise DataError("distance needs item features of kind 'latitude' and 'longitude'")
    lat = np.radians(features.frame[lat_columns[0]].to_numpy(dtype=float))
    lon = np.radians(features.frame[lon_columns[0]].to_numpy(dtype=float))
    lat0, lon0 = np.radians(latitude), np.radians(longitude)
    half = (
        np.sin((lat - lat0) / 2) ** 2 + np.cos(lat0) * np.cos(lat) * np.sin((lon - lon0) / 2) ** 2
    )
    return np.asarray(2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(half, 0, 1))), dtype=float)


@dataclass(frozen=True)
class AllOf:
    """Every constraint holds."""

    constraints: tuple[Constraint, ...]

    def mask(self, features: FeatureTable) -> npt.NDArray[np.bool_]:
        keep = np.ones(len(features.frame), dtype=bool)
        for constraint in self.constraints:
            keep &= constraint.mask(features)
        return keep


def parse_constraints(spec: Mapping[str, Any]) -> AllOf:
    """Build constraints from the mapping form described in the module docstring."""
    if not isinstance(spec, Mapping):
        raise DataError("constraints must be a mapping of feature name to condition")
    parts: list[Constraint] = []
    for name, condition in spec.items():
        if name == "near":
            if not isinstance(condition, Mapping) or not {"lat", "lon", "km"} <= set(condition):
                raise DataError("'near' needs {'lat': ..., 'lon': ..., 'km': ...}")
            try:
                point = (float(condition["lat"]), float(condition["lon"]), float(condition["km"]))
            except (TypeError, ValueError) as error:
                raise DataError("'near' needs numbers for lat, lon and km") from error
            parts.append(Within(*point))
        elif isinstance(condition, Mapping):
            unknown = set(condition) - {"min", "max"}
            if unknown:
                raise DataError(f"condition on {name!r}: unknown keys {sorted(unknown)}")
            try:
                low = None if condition.get("min") is None else float(condition["min"])
                high = None if condition.get("max") is None else float(condition["max"])
            except (TypeError, ValueError) as error:
                raise DataError(f"condition on {name!r}: min and max must be numbers") from error
            parts.append(Range(name, low, high))
        elif isinstance(condition, Sequence) and not isinstance(condition, str):
            if not condition:
                raise DataError(f"condition on {name!r}: empty list of values")
            parts.append(OneOf(name, tuple(condition)))
        else:
            parts.append(Equals(name, condition))
    return AllOf(tuple(parts))
