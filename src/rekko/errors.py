"""Errors that rekko raises on purpose. Each says what was wrong and where."""

from __future__ import annotations

from collections.abc import Sequence


class RekkoError(Exception):
    """Base class of every error rekko raises on purpose (the CLI prints these as one line)."""


class DataError(RekkoError, ValueError):
    """Input data is missing, malformed or inconsistent.

    The message names the source (file or table), and where known the row and column; the
    error is raised where the problem is found, with these fields set (see
    :class:`rekko.data.validation.Location`). Rows are counted as a person finds them in the
    source: in a text file the header is line 1; Parquet files and database tables and queries
    count their rows from 1; a frame given directly counts as a file with a header (its first
    row is row 2).
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.source = source
        self.row = row
        self.column = column
        where = []
        if source is not None:
            where.append(str(source))
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column '{column}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class UnknownIdError(RekkoError, KeyError):
    """One or more external ids are not known to an id map or a model."""

    def __init__(self, kind: str, ids: Sequence[object]) -> None:
        self.kind = kind
        self.ids = list(ids)
        shown = ", ".join(repr(i) for i in self.ids[:5])
        more = f" and {len(self.ids) - 5} more" if len(self.ids) > 5 else ""
        super().__init__(f"unknown {kind} id(s): {shown}{more}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ModelError(RekkoError):
    """A model was used in a way it does not support, or a model folder is invalid."""


class NotFittedError(ModelError):
    """A model was used before `fit` (or `load`)."""
