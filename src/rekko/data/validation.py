"""The checks every interactions and feature frame passes: each made once, here.

Readers only pick columns and normalise ids; :meth:`Dataset.from_frame` and
:meth:`FeatureTable.build` call these checks. A :class:`Location` says where the frame's rows
came from, so that an error is raised where it is found, already naming the source, the row as
a person finds it there and the source's own column name: nothing reads or rewrites an error
message afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from rekko.data.idmap import MAX_ID_LENGTH
from rekko.errors import DataError

# What pandas infers for object columns that may hold lists, arrays or mappings.
_MAYBE_NESTED = ("mixed", "mixed-integer", "unknown-array")


@dataclass(frozen=True, eq=False)
class Location:
    """Where the rows of a frame came from, for the errors about them.

    ``first_row`` is the number of the frame's first row: 2 for a text file with a header
    line (the header is line 1) and for frames given directly, 1 for Parquet files, database
    tables and queries, and text files without a header. ``rows``, when given, numbers each
    frame row instead (for a frame that keeps only some rows of its source). ``columns`` maps
    the frame's column names to the source's (``{"user_id": "userId"}``).
    """

    source: str | None = None
    first_row: int = 2
    columns: Mapping[str, str] = field(default_factory=dict)
    rows: npt.NDArray[np.int64] | None = None

    @classmethod
    def of(cls, source: str | Location | None) -> Location:
        """``source`` itself, or a location that only names the source (rows from 2)."""
        return source if isinstance(source, Location) else cls(source)

    def row(self, position: int) -> int:
        """The row number of the frame's row at ``position``."""
        if self.rows is not None:
            return int(self.rows[position])
        return self.first_row + position

    def error(
        self, message: str, *, position: int | None = None, column: str | None = None
    ) -> DataError:
        """A :class:`DataError` about the frame's row ``position`` and ``column``."""
        return DataError(
            message,
            source=self.source,
            row=None if position is None else self.row(position),
            column=None if column is None else self.columns.get(column, column),
        )


def show_value(value: Any) -> str:
    """A value as a person wrote it: numbers plain, text quoted (no numpy reprs), one line."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    text = repr(value) if isinstance(value, str) else str(value)
    text = " ".join(text.split()) if not isinstance(value, str) else text
    return text if len(text) <= 60 else text[:57] + "..."


def first_true(mask: pd.Series | npt.NDArray[np.bool_]) -> int:
    """Position of the first true entry of ``mask``."""
    return int(np.flatnonzero(np.asarray(mask, dtype=bool))[0])


def first_non_scalar(values: pd.Series) -> int | None:
    """Position of the first list, array or mapping in ``values`` (such as a Parquet list)."""
    if values.dtype != object or pd.api.types.infer_dtype(values, skipna=True) not in _MAYBE_NESTED:
        return None
    nested = ~values.map(pd.api.types.is_scalar).to_numpy(dtype=bool)
    return first_true(nested) if nested.any() else None


def _check_scalars(values: pd.Series, column: str, at: Location, expected: str) -> None:
    position = first_non_scalar(values)
    if position is not None:
        shown = show_value(values.iloc[position])
        raise at.error(f"expected {expected}, got {shown}", position=position, column=column)


# -- interactions ---------------------------------------------------------------------------
def check_ids(values: pd.Series, column: str, at: Location) -> None:
    """Every id is present and one integer or text of at most :data:`MAX_ID_LENGTH` characters."""
    _check_scalars(values, column, at, "a single id")
    missing = values.isna().to_numpy(dtype=bool)
    text: pd.Series | None = None
    if not pd.api.types.is_numeric_dtype(values):
        text = values.astype(str)
        missing = missing | (text.str.strip() == "").to_numpy(dtype=bool)
    if missing.any():
        raise at.error("missing id", position=first_true(missing), column=column)
    if pd.api.types.is_bool_dtype(values):
        raise at.error(
            f"expected an integer or a text id, got {show_value(values.iloc[0])}",
            position=0,
            column=column,
        )
    if pd.api.types.is_float_dtype(values):
        array = values.to_numpy(dtype=np.float64)
        fractional = ~np.isfinite(array) | (array != np.round(array))
        if fractional.any():
            first = first_true(fractional)
            raise at.error(
                f"expected an integer or a text id, got {show_value(values.iloc[first])}",
                position=first,
                column=column,
            )
    if text is not None:
        too_long = (text.str.len() > MAX_ID_LENGTH).to_numpy(dtype=bool)
        if too_long.any():
            first = first_true(too_long)
            raise at.error(
                f"id of {len(text.iloc[first])} characters is too long (at most {MAX_ID_LENGTH})",
                position=first,
                column=column,
            )


def check_numbers(values: pd.Series, column: str, at: Location) -> npt.NDArray[np.float64]:
    """``values`` as finite numbers >= 0 (ratings and implicit strengths)."""
    _check_scalars(values, column, at, "a number")
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna().to_numpy(dtype=bool)
    if bad.any():
        first = first_true(bad)
        raise at.error(
            f"expected a number, got {show_value(values.iloc[first])}",
            position=first,
            column=column,
        )
    array = numbers.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(array) | (array < 0)
    if bad.any():
        first = first_true(bad)
        raise at.error(
            f"{column} must be a finite number >= 0, got {show_value(values.iloc[first])}",
            position=first,
            column=column,
        )
    return array


def check_events(values: pd.Series, column: str, at: Location) -> pd.Series:
    """Event types as text; every row must have one."""
    _check_scalars(values, column, at, "an event type")
    absent = values.isna() | (values.astype(str).str.strip() == "")
    if absent.any():
        raise at.error("missing event type", position=first_true(absent), column=column)
    return values.astype(str)


def weigh_events(
    events: pd.Series,
    weights: Mapping[str, float],
    default: float | None,
    column: str,
    at: Location,
) -> npt.NDArray[np.float32]:
    """The weight of each event; a type without a weight (and no ``default``) is an error."""
    codes, names = pd.factorize(events.astype(str))
    table = np.array([weights.get(name, np.nan) for name in names], dtype=np.float64)
    unknown = np.isnan(table)
    if unknown.any():
        if default is None:
            first = first_true(unknown[codes])
            known = ", ".join(sorted(weights)) or "none configured"
            raise at.error(
                f"unknown event type {show_value(names[codes[first]])} (known: {known}; set a "
                "default weight with '*=1')",
                position=first,
                column=column,
            )
        table[unknown] = default
    return table[codes].astype(np.float32)


def parse_timestamps(
    values: pd.Series, *, source: str | Location | None = None, column: str = "timestamp"
) -> npt.NDArray[np.int64]:
    """Unix seconds from numbers (s or ms) or date strings; errors name the first bad row."""
    at = Location.of(source)
    values = values.reset_index(drop=True)
    _check_scalars(values, column, at, "a time")
    if values.isna().any():
        raise at.error("missing timestamp", position=first_true(values.isna()), column=column)
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values, utc=True)
    else:
        numbers = pd.to_numeric(values, errors="coerce")
        is_number = numbers.notna().to_numpy()
        array = numbers.to_numpy(dtype=np.float64)
        # Retailrocket and browsers log milliseconds; seconds would be after year 5000.
        if is_number.any() and np.nanmax(np.abs(array)) > 1e11:
            array = array / 1000.0
        if is_number.all():
            whole: npt.NDArray[np.int64] = np.floor(array).astype(np.int64)
            return whole
        texts = values[~is_number].astype(str)
        parsed = pd.to_datetime(texts, errors="coerce", utc=True, format="mixed")
        if parsed.isna().any():
            first = int(parsed.index[first_true(parsed.isna())])
            raise at.error(
                f"cannot read {show_value(values.iloc[first])} as a time "
                "(use unix seconds or ISO 8601)",
                position=first,
                column=column,
            )
        seconds_text = (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
        out = np.zeros(len(values), dtype=np.int64)
        out[is_number] = np.floor(array[is_number]).astype(np.int64)
        out[~is_number] = seconds_text.to_numpy(dtype=np.int64)
        return out
    seconds = (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return np.asarray(seconds.to_numpy(dtype=np.int64), dtype=np.int64)


# -- feature tables -------------------------------------------------------------------------
def check_features(
    table: pd.DataFrame, id_column: str, numeric: Mapping[str, str], at: Location
) -> dict[str, npt.NDArray[np.float64]]:
    """Check a feature table's ids (present, well-formed, unique) and numeric columns.

    ``numeric`` maps each column that must hold numbers to its kind (for the message); the
    result holds those columns as floats (missing values as NaN).
    """
    if id_column not in table.columns:
        raise at.error(
            f"feature table has no id column {at.columns.get(id_column, id_column)!r} "
            f"(columns: {list(table.columns)})"
        )
    ids = table[id_column]
    check_ids(ids, id_column, at)
    duplicated = ids.duplicated().to_numpy(dtype=bool)
    if duplicated.any():
        first = first_true(duplicated)
        raise at.error(
            f"duplicate id {show_value(ids.iloc[first])} (ids in a feature table must be unique)",
            position=first,
            column=id_column,
        )
    numbers: dict[str, npt.NDArray[np.float64]] = {}
    for name, kind in numeric.items():
        values = table[name]
        _check_scalars(values, name, at, "a number")
        parsed = pd.to_numeric(values.astype(object), errors="coerce")
        bad = (parsed.isna() & values.notna()).to_numpy(dtype=bool)
        if bad.any():
            first = first_true(bad)
            raise at.error(
                f"expected a number ({kind} feature), got {show_value(values.iloc[first])}",
                position=first,
                column=name,
            )
        numbers[name] = parsed.to_numpy(dtype=np.float64)
    return numbers
