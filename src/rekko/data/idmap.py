"""External ids <-> contiguous integer indices, owned in one place.

Like TensorFlow's ``StringLookup`` or RecTools' ``IdMap``: models only ever see the integers
``0..n-1``; the map turns them back into the ids found in the data. Ids keep their kind: a map
built from integers answers with integers, one built from strings with strings. Lookups coerce
between the two (``"42"`` finds ``42`` in an integer map), so ids typed on a command line or
sent over HTTP find the same row as ids read from a file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from rekko.errors import DataError, UnknownIdError

ExternalId = int | str
IdKind = Literal["int", "str"]

#: Returned by :meth:`IdMap.to_index` for ids that are not in the map (with ``unknown="mark"``).
UNKNOWN = -1

#: Longest external id, in characters, that rekko reads from data: the HTTP service and its
#: database accept no longer ids (``rekko.store.schema.ID_LENGTH``), so a model trained from a
#: file never knows an id that a request could not name.
MAX_ID_LENGTH = 255


def _kind_of(values: npt.NDArray[Any]) -> IdKind:
    if values.dtype.kind in "iu":
        return "int"
    if values.dtype.kind == "f":
        if len(values) and not np.all(np.isfinite(values) & (values == np.round(values))):
            raise DataError("ids must be integers or strings, found non-integer numbers")
        return "int"
    if values.dtype.kind == "b":
        raise DataError("ids must be integers or strings, found booleans")
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return "int"
    return "str"


def _as_array(values: Iterable[Any] | npt.NDArray[Any] | pd.Series) -> npt.NDArray[Any]:
    """A 1-d NumPy array of ids (object for text), without a Python loop for columns."""
    if isinstance(values, (pd.Series, pd.Index)):
        values = values.to_numpy()
    elif not isinstance(values, np.ndarray):
        values = np.asarray(list(values), dtype=object)
    if values.dtype.kind in "US":
        values = values.astype(object)
    if values.dtype.kind == "O" and len(values):
        inferred = pd.api.types.infer_dtype(values, skipna=True)
        if inferred == "integer":
            values = values.astype(np.int64)
    return values


class IdMap:
    """A bijection between external ids and the indices ``0..len-1``.

    Build one with :meth:`from_values`; grow it with :meth:`extend`, which appends new ids
    after the old ones so that existing indices never change.
    """

    __slots__ = ("_external", "_index", "_lookup", "kind")

    def __init__(self, external_ids: Sequence[ExternalId], kind: IdKind) -> None:
        self.kind: IdKind = kind
        if kind == "int":
            external = np.asarray([int(i) for i in external_ids], dtype=np.int64)
        else:
            external = np.asarray([str(i) for i in external_ids], dtype=object)
        index: dict[ExternalId, int] = {}
        for position, value in enumerate(external.tolist()):
            if value in index:
                raise DataError(f"duplicate id {value!r} in id map")
            index[value] = position
        self._external = external
        self._index = index
        self._lookup: pd.Index | None = None

    @classmethod
    def from_values(cls, values: Iterable[Any] | npt.NDArray[Any] | pd.Series) -> IdMap:
        """Map the distinct values in order of first appearance."""
        array = _as_array(values)
        if len(array) == 0:
            return cls([], "str")
        if pd.isna(array).any():
            raise DataError("ids must not be empty (found a missing id)")
        distinct = pd.unique(array)
        kind = _kind_of(distinct)
        if kind == "int":
            distinct = distinct.astype(np.int64)
        else:
            # Mixed ints and strings become strings; "1" and 1 are then one id.
            distinct = pd.unique(np.asarray([str(v) for v in distinct], dtype=object))
        return cls(distinct.tolist(), kind)

    def __len__(self) -> int:
        return len(self._external)

    def __contains__(self, external_id: object) -> bool:
        coerced = self._coerce(external_id)
        return coerced is not None and coerced in self._index

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, IdMap)
            and self.kind == other.kind
            and np.array_equal(self._external, other._external)
        )

    def __hash__(self) -> int:
        return hash((self.kind, len(self)))

    def __repr__(self) -> str:
        return f"IdMap(kind={self.kind!r}, size={len(self)})"

    @property
    def external_ids(self) -> npt.NDArray[Any]:
        """All external ids, at their index. Read-only view."""
        view = self._external.view()
        view.flags.writeable = False
        return view

    def _coerce(self, external_id: object) -> ExternalId | None:
        if self.kind == "int":
            if isinstance(external_id, (bool, np.bool_)):
                return None
            if isinstance(external_id, (int, np.integer)):
                return int(external_id)
            if isinstance(external_id, (float, np.floating)):
                return int(external_id) if float(external_id).is_integer() else None
            if isinstance(external_id, str):
                try:
                    return int(external_id.strip())
                except ValueError:
                    return None
            return None
        if isinstance(external_id, (str, int, np.integer)) and not isinstance(
            external_id, (bool, np.bool_)
        ):
            return str(external_id)
        return None

    def to_index(
        self,
        external_ids: Iterable[object],
        *,
        unknown: Literal["raise", "mark"] = "raise",
        what: str = "",
    ) -> npt.NDArray[np.int64]:
        """Indices of ``external_ids``.

        Args:
            unknown: ``"raise"`` raises :class:`UnknownIdError` naming the unknown ids;
                ``"mark"`` returns :data:`UNKNOWN` (-1) in their place.
            what: the kind of id, for the error message ("user", "item").
        """
        array = _as_array(external_ids)
        fast = self._fast_index(array)
        if fast is not None:
            if unknown == "raise" and (fast < 0).any():
                raise UnknownIdError(what or "external", array[fast < 0].tolist())
            return fast
        out = np.empty(len(array), dtype=np.int64)
        missing: list[object] = []
        for position, value in enumerate(array.tolist()):
            coerced = self._coerce(value)
            found = self._index.get(coerced, UNKNOWN) if coerced is not None else UNKNOWN
            if found == UNKNOWN:
                missing.append(value)
            out[position] = found
        if missing and unknown == "raise":
            raise UnknownIdError(what or "external", missing)
        return out

    def _fast_index(self, array: npt.NDArray[Any]) -> npt.NDArray[np.int64] | None:
        """Vectorised look-up when every value already has this map's kind (the usual case)."""
        if len(array) < 64:
            return None
        if self.kind == "int" and array.dtype.kind in "iu":
            array = array.astype(np.int64)
        elif self.kind == "str" and (
            array.dtype.kind == "U"
            or (array.dtype.kind == "O" and pd.api.types.infer_dtype(array) == "string")
        ):
            array = array.astype(object)
        else:
            return None
        if self._lookup is None:
            self._lookup = pd.Index(self._external)
        return np.asarray(self._lookup.get_indexer(pd.Index(array)), dtype=np.int64)

    def index_of(self, external_id: object, *, what: str = "") -> int:
        """Index of one external id; raises :class:`UnknownIdError` if it is unknown."""
        found = self.find(external_id)
        if found == UNKNOWN:
            raise UnknownIdError(what or "external", [external_id])
        return found

    def find(self, external_id: object) -> int:
        """Index of one external id, or :data:`UNKNOWN` (a dictionary look-up: this runs on
        every request)."""
        coerced = self._coerce(external_id)
        return UNKNOWN if coerced is None else self._index.get(coerced, UNKNOWN)

    def to_external(self, indices: npt.ArrayLike) -> npt.NDArray[Any]:
        """External ids at ``indices`` (which must be valid)."""
        positions = np.asarray(indices, dtype=np.int64)
        if positions.size and (positions.min() < 0 or positions.max() >= len(self)):
            raise IndexError(f"index out of range for an id map of size {len(self)}")
        return self._external[positions]

    def extend(self, external_ids: Iterable[object]) -> IdMap:
        """A new map with the unknown ids among ``external_ids`` appended; old indices stay."""
        values = _as_array(external_ids)
        if len(self) == 0:
            return IdMap.from_values(values)
        new: list[ExternalId] = []
        seen: set[ExternalId] = set()
        for value in values[self.to_index(values, unknown="mark") < 0].tolist():
            coerced = self._coerce(value)
            if coerced is None:
                raise DataError(f"id {value!r} is not a valid {self.kind} id for this map")
            if coerced not in self._index and coerced not in seen:
                seen.add(coerced)
                new.append(coerced)
        if not new:
            return self
        return IdMap([*self._external.tolist(), *new], self.kind)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description (used by model folders)."""
        return {"kind": self.kind, "ids": self._external.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IdMap:
        kind = data.get("kind")
        if kind not in ("int", "str") or not isinstance(data.get("ids"), list):
            raise DataError("invalid id map: expected {'kind': 'int'|'str', 'ids': [...]}")
        return cls(data["ids"], kind)
