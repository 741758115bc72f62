"""Read interactions and feature tables from files and SQL databases into plain frames.

Readers only pick and rename columns and normalise ids; the values (ids, numbers, ratings,
timestamps, event types) are checked once, by :mod:`rekko.data.validation` (through
:meth:`Dataset.from_frame`), so one set of rules applies to every source. Readers tell it where
the rows came from (a :class:`~rekko.data.validation.Location`), so that its errors name the
source, row and column directly. Supported sources:

* text files ``.csv``, ``.tsv`` and ``.txt`` with a header line; the separator is a tab for
  ``.tsv`` and otherwise sniffed from the header (comma, tab, semicolon or pipe);
* ``.parquet`` files;
* SQL databases, given as a SQLAlchemy URL (``sqlite:///shop.db``,
  ``postgresql+psycopg://user@host/db``, ``mysql+pymysql://user@host/db``) with either a
  ``table`` name (looked up and quoted by SQLAlchemy, never pasted into SQL) or a ``query``.

Ids are kept exactly as written (strings) unless every id in the column is an integer, in which
case the column becomes ``int64``: ``"007"`` stays a string, ``" 42"`` becomes ``42``. Frames
keep a default ``RangeIndex``, so row ``i`` of a text file is line ``i + 2`` (the header is
line 1): the row number a :class:`~rekko.errors.DataError` reports. Rows of Parquet files and
of database tables and queries are counted from 1.
"""

from __future__ import annotations

import csv
import difflib
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import sqlalchemy as sa

from rekko.data import validation
from rekko.data.dataset import (
    EVENT,
    ITEM,
    RATING,
    TIMESTAMP,
    USER,
    VALUE,
    Aggregate,
    CheckedRows,
    Dataset,
    EventWeights,
    FeatureKind,
    check_rows,
)
from rekko.data.validation import Location
from rekko.errors import DataError

logger = logging.getLogger(__name__)

Source = str | Path
Target = Literal["user", "item"]

TEXT_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
_SEPARATORS = (",", "\t", ";", "|")
_INTEGER = r"0|-?[1-9][0-9]{0,17}"
_NUMERIC_KINDS = ("numeric", "latitude", "longitude")
_OPTIONAL = (RATING, VALUE, EVENT, TIMESTAMP)

# Names people often give id columns: used to suggest a mapping, never applied silently.
_USUAL_NAMES = {
    USER: ("user", "userid", "visitor", "visitorid", "customer", "customerid", "client", "uid"),
    ITEM: ("item", "itemid", "movie", "movieid", "product", "productid", "sku", "iid"),
}

# Picks columns from the names a source has, as {source column: output column}, raising a
# DataError when one it needs is missing.
Picker = Callable[[list[str]], dict[str, str]]


@dataclass(frozen=True)
class ColumnMap:
    """Which source column holds each field of an interactions frame.

    ``user`` and ``item`` must exist. ``rating``, ``value``, ``event`` and ``timestamp`` are
    optional: left as ``None``, a column with the canonical name (``rating``, ``value``, ...)
    is used when the source has one; named explicitly, the column must exist.
    """

    user: str = USER
    item: str = ITEM
    rating: str | None = None
    value: str | None = None
    event: str | None = None
    timestamp: str | None = None

    def __post_init__(self) -> None:
        named = [(f.name, getattr(self, f.name)) for f in fields(self)]
        for field_name, column in named:
            if column is not None and (not isinstance(column, str) or not column.strip()):
                raise DataError(
                    f"column for {field_name!r} must be a non-empty name, got {column!r}"
                )
        given = [column for _, column in named if column is not None]
        repeated = sorted({column for column in given if given.count(column) > 1})
        if repeated:
            raise DataError(f"column {repeated[0]!r} is mapped to more than one field")

    @classmethod
    def parse(cls, text: str) -> ColumnMap:
        """Parse ``"user=userId,item=movieId,rating=stars"`` (``user_id=...`` works too)."""
        names = {f.name for f in fields(cls)}
        mapping: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, column = part.partition("=")
            key = key.strip().removesuffix("_id")
            if not sep or key not in names or not column.strip():
                expected = ", ".join(sorted(names))
                raise DataError(f"columns: expected FIELD=COLUMN (FIELD: {expected}), got {part!r}")
            mapping[key] = column.strip()
        return cls(**mapping)

    def source_name(self, canonical: str) -> str:
        """The source column read for a canonical column (``"user_id"`` -> ``self.user``)."""
        given: str | None = getattr(self, canonical.removesuffix("_id"))
        return given if given is not None else canonical

    def source_names(self) -> dict[str, str]:
        """``{canonical column: source column}`` for every field, for naming errors."""
        return {canonical: self.source_name(canonical) for canonical in (USER, ITEM, *_OPTIONAL)}

    def resolve(self, found: Sequence[str], *, source: str | None = None) -> dict[str, str]:
        """``{source column: canonical column}`` for the fields present in ``found``."""
        wanted: dict[str, str] = {}
        named = {self.source_name(canonical) for canonical in (USER, ITEM, *_OPTIONAL)}
        for canonical in (USER, ITEM, *_OPTIONAL):
            name = self.source_name(canonical)
            required = canonical in (USER, ITEM) or getattr(self, canonical) is not None
            if name in found:
                wanted[name] = canonical
            elif required:
                # Suggest only columns that no other field uses.
                unused = [column for column in found if column not in named]
                raise missing_column(
                    name,
                    found,
                    source=source,
                    field=canonical,
                    candidates=unused,
                    option=f"--{canonical.removesuffix('_id')}-col",
                )
        return wanted


def missing_column(
    name: str,
    found: Sequence[str],
    *,
    source: str | None = None,
    field: str | None = None,
    candidates: Sequence[str] | None = None,
    option: str | None = None,
) -> DataError:
    """A :class:`DataError` for a missing column, listing the columns found and the closest.

    ``candidates`` are the columns worth suggesting (default: all of ``found``); ``option``
    is the flag or setting that maps the column (``--user-col``, ``item_id_col``).
    """
    message = f"missing column {name!r} (columns found: {', '.join(map(str, found)) or 'none'})"
    suggestion = closest_column(name, found if candidates is None else candidates, field=field)
    if suggestion is not None:
        message += f"; did you mean {suggestion!r}?"
    if option is not None and suggestion is not None:
        mapping = f"{option} {suggestion}" if option.startswith("--") else f"{option}={suggestion}"
        message += f" Map it with {mapping}"
    return DataError(message, source=source)


def closest_column(name: str, found: Sequence[str], *, field: str | None = None) -> str | None:
    """The column of ``found`` most like ``name`` (ignoring case and punctuation), if any."""

    def squash(text: str) -> str:
        return re.sub(r"[^0-9a-z]", "", str(text).lower())

    squashed = {squash(column): str(column) for column in reversed(found)}
    if squash(name) in squashed:
        return squashed[squash(name)]
    for usual in _USUAL_NAMES.get(field or "", ()):
        if usual in squashed:
            return squashed[usual]
    close = difflib.get_close_matches(squash(name), list(squashed), n=1, cutoff=0.6)
    return squashed[close[0]] if close else None


def normalize_ids(values: pd.Series) -> pd.Series:
    """Ids as ``int64`` when every one is an integer, else as strings exactly as written.

    Missing ids, and columns holding lists or other non-scalar values, are left as they are,
    so that the id check (:func:`rekko.data.validation.check_ids`) can name their row.
    """
    if pd.api.types.is_bool_dtype(values) or validation.first_non_scalar(values) is not None:
        return values
    if pd.api.types.is_integer_dtype(values):
        return values.astype(np.int64)
    if pd.api.types.is_float_dtype(values):
        array = values.to_numpy(dtype=np.float64)
        exact = np.isfinite(array).all() and (np.abs(array) < 2**53).all()
        if exact and (array == np.round(array)).all():
            return values.astype(np.int64)
        return values
    if values.isna().any():
        return as_text(values)
    if pd.api.types.is_object_dtype(values) and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values
    ):
        return values.astype(np.int64)
    text = as_text(values)
    stripped = text.str.strip()
    if len(stripped) and bool(stripped.str.fullmatch(_INTEGER).all()):
        return stripped.astype(np.int64)
    return text


def as_text(values: pd.Series) -> pd.Series:
    """``values`` as strings, with missing values left missing."""
    if pd.api.types.is_string_dtype(values) and not pd.api.types.is_object_dtype(values):
        return values
    return values.map(lambda v: v if v is None or v is pd.NA or v != v else str(v)).astype("str")


# -- sources ----------------------------------------------------------------------------------
def is_database_url(source: Source) -> bool:
    """Whether ``source`` names a database (a SQLAlchemy URL) rather than a file."""
    return isinstance(source, str) and "://" in source


def describe_source(source: Source, *, table: str | None = None, query: str | None = None) -> str:
    """A short name for messages: the file name, or the URL without its password."""
    if not is_database_url(source):
        return Path(source).name
    where = redact_url(str(source))
    if table is not None:
        return f"{where} table {table!r}"
    return f"{where} query" if query is not None else where


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (a placeholder if it cannot be parsed)."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return "<database URL>"


def _label(source: Source, table: str | None, query: str | None) -> str:
    """How errors name a source: the path as given, or the redacted URL and table."""
    return (
        describe_source(source, table=table, query=query)
        if is_database_url(source)
        else str(source)
    )


def _read(
    source: Source,
    pick: Picker,
    *,
    text_columns: Callable[[dict[str, str]], Sequence[str]],
    table: str | None,
    query: str | None,
    sep: str | None,
    encoding: str,
) -> pd.DataFrame:
    """The picked columns of any source, renamed; ``text_columns`` of text files as strings."""
    if is_database_url(source):
        if sep is not None:
            raise DataError("sep only applies to text files, not to a database")
        return _read_sql(str(source), pick, table=table, query=query)
    if table is not None or query is not None:
        raise DataError(
            "table and query only apply to a database URL (such as sqlite:///shop.db)",
            source=str(source),
        )
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        if sep is not None:
            raise DataError("sep only applies to text files", source=str(path))
        return _read_parquet(path, pick)
    if suffix in TEXT_SUFFIXES:
        return _read_text(path, pick, text_columns, sep=sep, encoding=encoding)
    _check_file(path)
    raise DataError(
        f"unsupported file type {path.suffix or '(none)'!r}: use "
        f"{', '.join(TEXT_SUFFIXES + PARQUET_SUFFIXES)} or a database URL",
        source=str(path),
    )


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataError("file not found", source=str(path))
    if not path.is_file():
        raise DataError("not a file", source=str(path))
    if path.stat().st_size == 0:
        raise DataError("empty file (no header and no rows)", source=str(path))


def _header_line(path: Path, encoding: str) -> str:
    """The first non-blank line of a text file."""
    _check_file(path)
    try:
        with path.open(encoding=encoding, newline="") as handle:
            header = next((line.rstrip("\r\n") for line in handle if line.strip()), None)
    except UnicodeDecodeError as exc:
        raise _decode_error(path, encoding, exc) from None
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r}", source=str(path)) from None
    if header is None:
        raise DataError("empty file (no header and no rows)", source=str(path))
    return header


def header_columns(path: Path, *, sep: str | None = None, encoding: str = "utf-8-sig") -> list[str]:
    """Column names from the header line of a text file (the separator sniffed if not given)."""
    header = _header_line(path, encoding)
    if sep is None:
        sep = "\t" if path.suffix.lower() == ".tsv" else sniff_separator(header)
    return [name.strip() for name in next(csv.reader([header], delimiter=sep))]


def _decode_error(path: Path, encoding: str, exc: UnicodeDecodeError) -> DataError:
    return DataError(
        f"cannot decode the file as {encoding} (byte {exc.start}); pass the right encoding, "
        "e.g. encoding='latin-1'",
        source=str(path),
    )


def sniff_separator(header: str) -> str:
    """The separator that splits ``header`` into the most fields (comma on a tie)."""
    best, best_fields = ",", 1
    for candidate in _SEPARATORS:
        count = len(next(csv.reader([header], delimiter=candidate)))
        if count > best_fields:
            best, best_fields = candidate, count
    return best


def read_text_file(
    path: Path,
    *,
    sep: str,
    encoding: str,
    names: list[str] | None = None,
    dtype: Mapping[str, Any] | None = None,
    header: bool = True,
) -> pd.DataFrame:
    """Read a delimited text file; failures are :class:`DataError` naming the file and line.

    ``dtype`` may name columns to read as ``str``. Every row must have as many fields as the
    header: a row with more (such as a text with an unquoted separator) is an error rather
    than silently shifted columns. pyarrow's CSV reader is tried first (several times faster
    on large files); anything it cannot read exactly as pandas would goes to ``pandas.read_csv``,
    which also words the errors.
    """
    _check_file(path)
    as_text = {name for name, kind in (dtype or {}).items() if kind is str}
    if len(as_text) == len(dtype or {}):
        fast = _read_with_arrow(
            path, sep=sep, encoding=encoding, names=names, text=as_text, header=header
        )
        if fast is not None:
            if fast.empty:
                raise DataError("the file has a header but no rows", source=str(path))
            return fast
    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            encoding=encoding,
            header=0 if header else None,
            names=names,
            dtype=dict(dtype) if dtype is not None else None,
            index_col=False,
        )
    except UnicodeDecodeError as exc:
        raise _decode_error(path, encoding, exc) from None
    except pd.errors.EmptyDataError:
        raise DataError("empty file (no header and no rows)", source=str(path)) from None
    except (pd.errors.ParserError, ValueError) as exc:
        long_row = _first_long_row(
            path, sep=sep, encoding=encoding, fields=len(names) if names is not None else None
        )
        if long_row is not None:
            line, expected, found = long_row
            raise DataError(
                f"expected {expected} fields, found {found} (quote values that contain {sep!r})",
                source=str(path),
                row=line,
            ) from None
        raise DataError(f"cannot parse the file: {_first_line(exc)}", source=str(path)) from None
    if frame.empty:
        raise DataError("the file has a header but no rows", source=str(path))
    return frame


def _first_long_row(
    path: Path, *, sep: str, encoding: str, fields: int | None
) -> tuple[int, int, int] | None:
    """``(line, expected, found)`` of the first record with more fields than ``fields``.

    ``fields`` defaults to the first record's count. Lines are counted from 1 and blank lines
    count; ``None`` when every record fits (the file failed to parse for another reason).
    """
    if len(sep) != 1:
        return None
    try:
        with path.open(encoding=encoding, newline="") as handle:
            reader = csv.reader(handle, delimiter=sep)
            line = 0
            for record in reader:
                start, line = line + 1, reader.line_num
                if not record:
                    continue
                if fields is None:
                    fields = len(record)
                elif len(record) > fields:
                    return start, fields, len(record)
    except (UnicodeDecodeError, LookupError, csv.Error):
        return None
    return None


# pandas' default missing-value markers, so that both readers agree on what is missing.
_NULL_MARKERS = (
    "",
    "#N/A",
    "#N/A N/A",
    "#NA",
    "-1.#IND",
    "-1.#QNAN",
    "-NaN",
    "-nan",
    "1.#IND",
    "1.#QNAN",
    "<NA>",
    "N/A",
    "NA",
    "NULL",
    "NaN",
    "None",
    "n/a",
    "nan",
    "null",
)


def _read_with_arrow(
    path: Path,
    *,
    sep: str,
    encoding: str,
    names: list[str] | None,
    text: set[str],
    header: bool,
) -> pd.DataFrame | None:
    """The file read by pyarrow as pandas would read it, or ``None`` to let pandas try.

    pyarrow refuses ragged rows and undecodable text (pandas then reports them); columns it
    reads as dates are read again as text, and columns of only missing values become floats.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if len(sep) != 1 or sep in '"\r\n':
        return None
    try:
        if header:
            with path.open(encoding=encoding, newline="") as handle:
                line = next((row.rstrip("\r\n") for row in handle if row.strip()), "")
            raw = next(csv.reader([line], delimiter=sep))
            read_options = pacsv.ReadOptions(encoding=encoding)
        elif names is not None:
            raw = list(names)
            read_options = pacsv.ReadOptions(column_names=names, encoding=encoding)
        else:
            return None
        wanted = list(names) if names is not None else raw
        if len(raw) != len(wanted) or len(set(raw)) != len(raw):
            return None
        types = {r: pa.string() for r, w in zip(raw, wanted, strict=True) if w in text}
        table = _arrow_csv(path, read_options, sep, types)
        # pandas leaves dates as written: read columns pyarrow took for dates again, as text.
        dates = [f.name for f in table.schema if pa.types.is_temporal(f.type)]
        if dates:
            table = _arrow_csv(path, read_options, sep, types | dict.fromkeys(dates, pa.string()))
    except (pa.lib.ArrowException, ValueError, OSError, LookupError):
        return None
    if table.column_names != raw:
        return None
    columns = []
    for column in table.columns:
        if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            return None
        columns.append(column.cast(pa.float64()) if pa.types.is_null(column.type) else column)
    frame: pd.DataFrame = pa.table(columns, names=wanted).to_pandas()
    return frame


def _arrow_csv(path: Path, read_options: Any, sep: str, types: Mapping[str, Any]) -> Any:
    import pyarrow.csv as pacsv

    return pacsv.read_csv(
        path,
        read_options=read_options,
        parse_options=pacsv.ParseOptions(delimiter=sep, newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=dict(types),
            null_values=list(_NULL_MARKERS),
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )


def _read_text(
    path: Path,
    pick: Picker,
    text_columns: Callable[[dict[str, str]], Sequence[str]],
    *,
    sep: str | None,
    encoding: str,
) -> pd.DataFrame:
    header = _header_line(path, encoding)
    if sep is None:
        sep = "\t" if path.suffix.lower() == ".tsv" else sniff_separator(header)
    names = [name.strip() for name in next(csv.reader([header], delimiter=sep))]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DataError(f"the header names column {repeated[0]!r} twice", source=str(path))
    wanted = pick(names)
    as_strings = {column: str for column in text_columns(wanted)}
    frame = read_text_file(path, sep=sep, encoding=encoding, names=names, dtype=as_strings)
    return frame[list(wanted)].rename(columns=wanted)


def _read_parquet(path: Path, pick: Picker) -> pd.DataFrame:
    import pyarrow.lib
    import pyarrow.parquet as pq

    _check_file(path)
    unreadable = (OSError, ValueError, pyarrow.lib.ArrowException)
    try:
        wanted = pick([str(name) for name in pq.read_schema(path).names])
        frame = pd.read_parquet(path, columns=list(wanted))
    except DataError:
        raise
    except unreadable as exc:
        raise DataError(
            f"cannot read the file as Parquet: {_first_line(exc)}", source=str(path)
        ) from None
    if frame.empty:
        raise DataError("the file has no rows", source=str(path))
    return frame.reset_index(drop=True).rename(columns=wanted)


# -- databases --------------------------------------------------------------------------------
@contextmanager
def _connect(url: str) -> Iterator[tuple[sa.Connection, str | None]]:
    """A connection and the URL's password; failures are DataErrors that hide the password."""
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        raise DataError(
            "cannot parse the database URL (expected dialect+driver://user:password@host/database)"
        ) from None
    where = parsed.render_as_string(hide_password=True)
    database = str(parsed.database or "")
    on_disk = database not in ("", ":memory:") and not database.startswith("file:")
    if parsed.get_backend_name() == "sqlite" and on_disk and not Path(database).is_file():
        # SQLite would silently create an empty database here.
        raise DataError("database file not found", source=where)
    try:
        engine = sa.create_engine(parsed)
    except sa.exc.NoSuchModuleError:
        raise DataError(
            f"unknown database kind {parsed.drivername!r} (use sqlite, postgresql+psycopg or "
            "mysql+pymysql)",
            source=where,
        ) from None
    except ImportError as exc:
        raise DataError(
            f"the database driver {exc.name or parsed.drivername!r} is not installed: install "
            "rekko[postgres] and use postgresql+psycopg://, or rekko[mysql] and mysql+pymysql://",
            source=where,
        ) from None
    try:
        try:
            connection = engine.connect()
        except sa.exc.DBAPIError as exc:
            raise DataError(
                f"cannot connect: {_db_message(exc, parsed.password)}", source=where
            ) from None
        with connection:
            yield connection, parsed.password
    finally:
        engine.dispose()


def _db_message(exc: BaseException, password: str | None) -> str:
    message = _first_line(getattr(exc, "orig", None) or exc)
    return message.replace(password, "***") if password else message


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_sql(url: str, pick: Picker, *, table: str | None, query: str | None) -> pd.DataFrame:
    if (table is None) == (query is None):
        raise DataError(
            "a database source needs exactly one of table or query", source=redact_url(url)
        )
    source = describe_source(url, table=table, query=query)
    with _connect(url) as (connection, password):
        try:
            if table is not None:
                selected = _reflect(connection, table, source)
                wanted = pick([str(column.name) for column in selected.columns])
                statement = sa.select(
                    *[selected.c[name].label(out) for name, out in wanted.items()]
                )
                result = connection.execute(statement)
            else:
                assert query is not None
                if not query.strip():
                    raise DataError("the query is empty", source=source)
                # Run the text as written: no bind parameters, so ':' and '%' mean themselves.
                result = connection.execution_options(no_parameters=True).exec_driver_sql(query)
                if not result.returns_rows:
                    raise DataError("the query returns no rows (is it a SELECT?)", source=source)
            names = result.keys()
            columns = [str(name) for name in names]
            rows = result.fetchall()
        except sa.exc.DBAPIError as exc:
            raise DataError(
                f"the database refused the query: {_db_message(exc, password)}", source=source
            ) from None
    frame = pd.DataFrame.from_records(rows, columns=columns, coerce_float=True)
    if query is not None:
        wanted = pick(columns)
        frame = frame[list(wanted)].rename(columns=wanted)
    if frame.empty:
        raise DataError("no rows", source=source)
    return frame


def _reflect(connection: sa.Connection, name: str, source: str) -> sa.Table:
    """The table called ``name`` (or ``schema.name``); an error lists the tables there are."""
    if not isinstance(name, str) or not name.strip() or "\x00" in name:
        raise DataError(f"invalid table name {name!r}", source=source)
    inspector = sa.inspect(connection)
    schema: str | None = None
    if not inspector.has_table(name) and "." in name:
        schema_name, _, table_name = name.partition(".")
        if schema_name in inspector.get_schema_names():
            schema, name = schema_name, table_name
    if not inspector.has_table(name, schema=schema):
        found = sorted(inspector.get_table_names(schema=schema))
        shown = ", ".join(found[:20]) + (", ..." if len(found) > 20 else "")
        message = f"table {name!r} not found (tables: {shown or 'none'})"
        close = difflib.get_close_matches(name, found, n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
        raise DataError(message, source=source)
    return sa.Table(name, sa.MetaData(), schema=schema, autoload_with=connection)


# -- public readers ---------------------------------------------------------------------------
def read_interactions(
    source: Source,
    *,
    columns: ColumnMap | None = None,
    table: str | None = None,
    query: str | None = None,
    sep: str | None = None,
    encoding: str = "utf-8-sig",
) -> pd.DataFrame:
    """Read raw interactions with canonical column names, ready for :meth:`Dataset.from_frame`.

    The frame has ``user_id`` and ``item_id`` and, when the source has them, ``rating``,
    ``value``, ``event`` and ``timestamp``; other columns are dropped. Values are not checked
    here: :meth:`Dataset.from_frame` checks them (pass it :func:`interactions_location` to have
    errors name this source's rows and columns).
    """
    mapping = columns or ColumnMap()
    label = _label(source, table, query)

    def pick(found: list[str]) -> dict[str, str]:
        return mapping.resolve(found, source=label)

    def text_columns(wanted: dict[str, str]) -> list[str]:
        return [name for name, out in wanted.items() if out in (USER, ITEM, EVENT)]

    frame = _read(
        source,
        pick,
        text_columns=text_columns,
        table=table,
        query=query,
        sep=sep,
        encoding=encoding,
    )
    logger.debug("read %d interactions from %s", len(frame), label)
    return canonical_interactions(frame)


def canonical_interactions(frame: pd.DataFrame) -> pd.DataFrame:
    """Interactions whose columns already carry the canonical names, with ids normalised as
    every reader does them and event types as text; other columns are dropped."""
    for column in (USER, ITEM):
        frame[column] = normalize_ids(frame[column])
    if EVENT in frame.columns:
        frame[EVENT] = as_text(frame[EVENT])
    return frame[[c for c in (USER, ITEM, *_OPTIONAL) if c in frame.columns]]


def interactions_location(
    source: Source,
    *,
    columns: ColumnMap | None = None,
    table: str | None = None,
    query: str | None = None,
) -> Location:
    """Where the rows of :func:`read_interactions`' frame came from, for the checks' errors."""
    return Location(
        describe_source(source, table=table, query=query),
        first_row=_first_row(source),
        columns=(columns or ColumnMap()).source_names(),
    )


def read_features(
    source: Source,
    *,
    id_column: str,
    target: Target,
    kinds: Mapping[str, FeatureKind] | None = None,
    table: str | None = None,
    query: str | None = None,
    sep: str | None = None,
    encoding: str = "utf-8-sig",
) -> pd.DataFrame:
    """Read a user or item feature table, with ``id_column`` renamed to ``user_id``/``item_id``.

    Columns named in ``kinds`` must exist; those of a non-numeric kind are read as text (so a
    categorical zip code keeps its leading zero) and numeric ones must hold numbers. Ids must
    be present and unique. Errors name the source, row and column.
    """
    frame, at = _read_features(
        source,
        (id_column,),
        target,
        kinds=kinds,
        table=table,
        query=query,
        sep=sep,
        encoding=encoding,
    )
    numeric = {name: kind for name, kind in (kinds or {}).items() if kind in _NUMERIC_KINDS}
    validation.check_features(frame, USER if target == "user" else ITEM, numeric, at)
    return frame


def _read_features(
    source: Source,
    id_columns: Sequence[str],
    target: Target,
    *,
    kinds: Mapping[str, FeatureKind] | None,
    table: str | None,
    query: str | None,
    sep: str | None,
    encoding: str,
) -> tuple[pd.DataFrame, Location]:
    """The unchecked frame of :func:`read_features`, with the first of ``id_columns`` that the
    source has as id, and where its rows came from."""
    if target not in ("user", "item"):
        raise DataError(f"target must be 'user' or 'item', got {target!r}")
    canonical = USER if target == "user" else ITEM
    kinds = dict(kinds or {})
    label = _label(source, table, query)
    chosen = id_columns[0]

    def pick(found: list[str]) -> dict[str, str]:
        nonlocal chosen
        chosen = next((c for c in id_columns if c in found), id_columns[0])
        if chosen not in found:
            raise missing_column(
                chosen, found, source=label, field=canonical, option=f"{target}_id_col"
            )
        if canonical in found and canonical != chosen:
            raise DataError(
                f"the table has both {chosen!r} and {canonical!r}: pick one as the id column",
                source=label,
            )
        for name in kinds:
            if name not in found:
                raise missing_column(name, [c for c in found if c != chosen], source=label)
        return {name: canonical if name == chosen else name for name in found}

    def text_columns(wanted: dict[str, str]) -> list[str]:
        return [
            name
            for name, out in wanted.items()
            if out == canonical or kinds.get(name, "numeric") not in _NUMERIC_KINDS
        ]

    frame = _read(
        source,
        pick,
        text_columns=text_columns,
        table=table,
        query=query,
        sep=sep,
        encoding=encoding,
    )
    frame[canonical] = normalize_ids(frame[canonical])
    logger.debug("read %d %s feature rows from %s", len(frame), target, label)
    at = Location(label, first_row=_first_row(source), columns={canonical: chosen})
    return frame, at


def _first_row(source: Source) -> int:
    """The number of a source's first data row (see :func:`has_header_line`)."""
    return 2 if has_header_line(source) else 1


def has_header_line(source: Source | pd.DataFrame) -> bool:
    """Whether rows of ``source`` are counted from a header line (text files), rather than
    from 1 (Parquet files, database tables and queries)."""
    if isinstance(source, pd.DataFrame) or is_database_url(source):
        return False
    return not str(source).lower().endswith(PARQUET_SUFFIXES)


@dataclass(frozen=True)
class RawData:
    """Interactions and feature tables as read, unchecked, with where their rows came from.

    :func:`read_data` returns it; :meth:`to_dataset` checks and builds the :class:`Dataset`.
    The service's import keeps the raw rows (one event per row) after those checks pass.
    """

    interactions: pd.DataFrame
    location: Location
    items: pd.DataFrame | None
    items_location: Location | None
    users: pd.DataFrame | None
    users_location: Location | None
    name: str

    def check(
        self,
        *,
        item_feature_kinds: Mapping[str, FeatureKind] | None = None,
        user_feature_kinds: Mapping[str, FeatureKind] | None = None,
        event_weights: EventWeights | Mapping[str, float] | None = None,
    ) -> CheckedRows:
        """Every check of :meth:`to_dataset`, without building the data set."""
        return check_rows(
            self.interactions,
            item_features=self.items,
            user_features=self.users,
            item_feature_kinds=item_feature_kinds,
            user_feature_kinds=user_feature_kinds,
            event_weights=event_weights,
            name=self.name,
            source=self.location,
            item_features_source=self.items_location,
            user_features_source=self.users_location,
        )

    def to_dataset(
        self,
        *,
        item_feature_kinds: Mapping[str, FeatureKind] | None = None,
        user_feature_kinds: Mapping[str, FeatureKind] | None = None,
        event_weights: EventWeights | Mapping[str, float] | None = None,
        aggregate: Aggregate = "sum",
        multi_separator: str = "|",
    ) -> Dataset:
        """Check every row and build the data set (a :class:`DataError` names the first bad
        row of the source it came from)."""
        return Dataset.from_frame(
            self.interactions,
            item_features=self.items,
            user_features=self.users,
            item_feature_kinds=item_feature_kinds,
            user_feature_kinds=user_feature_kinds,
            event_weights=event_weights,
            aggregate=aggregate,
            multi_separator=multi_separator,
            name=self.name,
            source=self.location,
            item_features_source=self.items_location,
            user_features_source=self.users_location,
        )


def read_data(
    interactions: Source,
    *,
    items: Source | pd.DataFrame | None = None,
    users: Source | pd.DataFrame | None = None,
    columns: ColumnMap | None = None,
    item_id_column: str | None = None,
    user_id_column: str | None = None,
    item_feature_kinds: Mapping[str, FeatureKind] | None = None,
    user_feature_kinds: Mapping[str, FeatureKind] | None = None,
    table: str | None = None,
    query: str | None = None,
    items_table: str | None = None,
    users_table: str | None = None,
    sep: str | None = None,
    encoding: str = "utf-8-sig",
    name: str | None = None,
) -> RawData:
    """Read interactions and optional feature tables (the reading half of
    :func:`load_dataset`; see there for the arguments). Nothing is checked yet."""
    mapping = columns or ColumnMap()
    frame = read_interactions(
        interactions, columns=mapping, table=table, query=query, sep=sep, encoding=encoding
    )
    item_frame, item_at = _features(
        items, "item", item_id_column, mapping.item, item_feature_kinds, items_table, encoding
    )
    user_frame, user_at = _features(
        users, "user", user_id_column, mapping.user, user_feature_kinds, users_table, encoding
    )
    if name is None:
        name = table or ("query" if is_database_url(interactions) else Path(interactions).stem)
    return RawData(
        interactions=frame,
        location=interactions_location(interactions, columns=mapping, table=table, query=query),
        items=item_frame,
        items_location=item_at,
        users=user_frame,
        users_location=user_at,
        name=name,
    )


def load_dataset(
    interactions: Source,
    *,
    items: Source | pd.DataFrame | None = None,
    users: Source | pd.DataFrame | None = None,
    columns: ColumnMap | None = None,
    item_id_column: str | None = None,
    user_id_column: str | None = None,
    item_feature_kinds: Mapping[str, FeatureKind] | None = None,
    user_feature_kinds: Mapping[str, FeatureKind] | None = None,
    event_weights: EventWeights | Mapping[str, float] | None = None,
    aggregate: Aggregate = "sum",
    table: str | None = None,
    query: str | None = None,
    items_table: str | None = None,
    users_table: str | None = None,
    sep: str | None = None,
    encoding: str = "utf-8-sig",
    multi_separator: str = "|",
    name: str | None = None,
) -> Dataset:
    """Read interactions and optional item / user feature tables into a :class:`Dataset`.

    ``items`` and ``users`` are files, database URLs (with ``items_table`` / ``users_table``)
    or frames. Their id column is ``item_id_column`` / ``user_id_column``; by default
    ``item_id`` / ``user_id``, or else the interactions' own id column name (e.g. ``movieId`` in
    both files). ``sep`` applies to the interactions file (feature files' separators are
    sniffed). Either a complete data set is returned or a :class:`DataError` is raised.
    """
    raw = read_data(
        interactions,
        items=items,
        users=users,
        columns=columns,
        item_id_column=item_id_column,
        user_id_column=user_id_column,
        item_feature_kinds=item_feature_kinds,
        user_feature_kinds=user_feature_kinds,
        table=table,
        query=query,
        items_table=items_table,
        users_table=users_table,
        sep=sep,
        encoding=encoding,
        name=name,
    )
    return raw.to_dataset(
        item_feature_kinds=item_feature_kinds,
        user_feature_kinds=user_feature_kinds,
        event_weights=event_weights,
        aggregate=aggregate,
        multi_separator=multi_separator,
    )


def _features(
    source: Source | pd.DataFrame | None,
    target: Target,
    id_column: str | None,
    interactions_id: str,
    kinds: Mapping[str, FeatureKind] | None,
    table: str | None,
    encoding: str,
) -> tuple[pd.DataFrame | None, Location | None]:
    """A feature table for :func:`load_dataset`, unchecked, and where its rows came from."""
    canonical = USER if target == "user" else ITEM
    candidates = [id_column] if id_column is not None else [canonical, interactions_id]
    if source is None:
        if table is not None:
            raise DataError(f"{target}s_table is set but no {target}s source is given")
        return None, None
    if isinstance(source, pd.DataFrame):
        column = next((c for c in candidates if c in source.columns), candidates[0])
        if column not in source.columns:
            raise missing_column(column, list(source.columns), source=f"{target} features")
        return source.rename(columns={column: canonical}), None
    if is_database_url(source) and table is None:
        raise DataError(f"reading {target}s from a database needs {target}s_table")
    return _read_features(
        source,
        candidates,
        target,
        kinds=kinds,
        table=table,
        query=None,
        sep=None,
        encoding=encoding,
    )
