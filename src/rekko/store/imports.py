"""Importing a team's own data into the service database, once, and following a table.

:func:`import_data` reads an interactions source (a CSV / Parquet file or a database table or
query, as :class:`~rekko.config.DataSpec` describes it) and its item and user feature files,
checks every row as ``rekko train`` does, and stores them in one transaction: either all of
it is imported or nothing is.

Each row becomes one event whose ``event_id`` is derived from the source and the row's
content (user, item, event type, value, time, and how many identical rows came before it).
Importing the same source again therefore stores nothing twice, and a file that grew (or
changed) stores only the rows that are new. A file source whose bytes did not change since
its last import is not even read again (its hash is kept in the ``imports`` table).

Rows become events like this: the event type is the source's event column, else ``rating``
when it has ratings (the service then trains on explicit ratings, see
:func:`rekko.service.training.build_dataset`), else ``interaction``; the value is the rating or
the value column, else 1; the time is the source's time column, else the import's time (rows
keep their order). :class:`Follower` polls a database table for rows whose column (an id or a
time that only grows) passed the last one taken, and stores them the same way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import sqlalchemy as sa
from sqlalchemy import Connection, Engine, select

from rekko import progress
from rekko.config import DataSpec
from rekko.data.dataset import ITEM, MAX_VALUE, USER, CheckedRows, EventWeights
from rekko.data.readers import RawData, canonical_interactions, is_database_url, redact_url
from rekko.data.validation import Location
from rekko.errors import DataError
from rekko.store.db import write_transaction
from rekko.store.repository import upsert_items_in, upsert_users_in
from rekko.store.schema import events
from rekko.store.schema import imports as imports_table

logger = logging.getLogger(__name__)

#: Event type of rows from a source with ratings and no event column.
RATING_EVENT = "rating"
#: Event type of rows from a source with neither ratings nor an event column.
INTERACTION_EVENT = "interaction"
#: Events written per statement (progress is reported after each).
IMPORT_CHUNK = 50_000
#: SQLite page cache while importing (KiB; the connection's default is 2 MB).
SQLITE_IMPORT_CACHE_KB = 512 * 1024
_EVENT_COLUMNS = ("event_id", "user_id", "item_id", "event_type", "value", "occurred_at")


@dataclass(frozen=True)
class ImportReport:
    """What one import did."""

    source: str
    rows: int  # rows in the source
    stored: int  # events stored now
    already: int  # rows stored by an earlier import
    items: int  # item feature rows written (inserted or updated)
    users: int  # user feature rows written
    seconds: float
    unchanged: bool = False  # the source's files did not change: nothing was read

    @property
    def rate(self) -> float:
        """Rows per second."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        if self.unchanged:
            return f"{self.source}: unchanged since its last import, nothing to do"
        parts = [f"{self.stored:,} new events"]
        if self.already:
            parts.append(f"{self.already:,} already stored")
        if self.items:
            parts.append(f"{self.items:,} items")
        if self.users:
            parts.append(f"{self.users:,} users")
        return (
            f"{self.source}: {self.rows:,} rows, {', '.join(parts)} in {self.seconds:.1f} s "
            f"({self.rate:,.0f} rows/s)"
        )


def describe(spec: DataSpec) -> str:
    """The source as shown to people (a database URL without its password)."""
    if spec.interactions is None:
        raise DataError("no data to import: give --interactions (a file or a database URL)")
    if is_database_url(spec.interactions):
        where = spec.table if spec.table is not None else f"query {spec.query!r}"
        return f"{redact_url(spec.interactions)} ({where})"
    return str(Path(spec.interactions).resolve())


def source_key(spec: DataSpec) -> str:
    """One key per source and column mapping (what makes two imports "the same source")."""
    described = {
        "source": describe(spec),
        "columns": spec.columns().source_names(),
        "items": _resolved(spec.items),
        "users": _resolved(spec.users),
    }
    text = json.dumps(described, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _resolved(path: str | None) -> str | None:
    if path is None or is_database_url(path):
        return path
    return str(Path(path).resolve())


def fingerprint(spec: DataSpec) -> str | None:
    """A hash of the source's files (and of the settings that change what rows become), or
    ``None`` for a database source, which can change without a trace."""
    paths = [spec.interactions, spec.items, spec.users]
    if any(path is not None and is_database_url(path) for path in paths):
        return None
    digest = hashlib.sha256()
    digest.update(
        json.dumps(
            {
                "columns": spec.columns().source_names(),
                "kinds": [spec.item_kinds, spec.user_kinds],
                "ids": [spec.item_id_col, spec.user_id_col],
            },
            sort_keys=True,
        ).encode()
    )
    for path in paths:
        digest.update(b"\0")
        if path is None:
            continue
        file = Path(path)
        if not file.is_file():
            return None  # the reader says what is wrong with it
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


# -- rows to events --------------------------------------------------------------------------
def event_frame(
    rows: CheckedRows,
    key: str,
    *,
    now: float,
    identity: npt.NDArray[Any] | None = None,
) -> pd.DataFrame:
    """The events of checked rows: ``event_id``, ``user_id``, ``item_id``, ``event_type``,
    ``value``, ``occurred_at`` (see the module docstring). ``identity`` (one value a row) is
    part of each event's id too."""
    frame = rows.frame
    n = len(frame)
    if rows.events is not None:
        kinds = rows.events.to_numpy(dtype=object)
    else:
        kinds = np.full(n, RATING_EVENT if rows.explicit else INTERACTION_EVENT, dtype=object)
    if rows.timestamps is not None:
        times = rows.timestamps.astype(np.float64)
        # Parsed, not as written: pandas formats a column of times by what the whole column
        # holds, so the same time can read differently in two batches.
        known_time = times
    else:
        # No times: the import's, a microsecond apart so that the rows keep their order.
        times = now + np.arange(n, dtype=np.float64) * 1e-6
        known_time = np.zeros(n, dtype=np.float64)
    out = pd.DataFrame(
        {
            "user_id": frame[USER].astype(str).to_numpy(dtype=object),
            "item_id": frame[ITEM].astype(str).to_numpy(dtype=object),
            "event_type": kinds,
            "value": np.minimum(rows.given, MAX_VALUE),
            "occurred_at": times,
        }
    )
    content = out[["user_id", "item_id", "event_type", "value"]].assign(time=known_time)
    if identity is not None:
        content["identity"] = identity
    hashes = pd.util.hash_pandas_object(content, index=False).to_numpy(dtype=np.uint64)
    repeat = pd.Series(hashes).groupby(hashes).cumcount().to_numpy()
    prefix = key[:8]
    out.insert(
        0,
        "event_id",
        [f"{prefix}{h:016x}{r:x}" for h, r in zip(hashes.tolist(), repeat.tolist(), strict=True)],
    )
    return out


def check(raw: RawData, spec: DataSpec, weights: EventWeights) -> CheckedRows:
    """Every row checked as ``rekko train`` checks them, and every event type weighted."""
    rows = raw.check(
        item_feature_kinds=spec.item_feature_kinds(),
        user_feature_kinds=spec.user_feature_kinds(),
        event_weights=weights,
    )
    if rows.events is None:
        kind = RATING_EVENT if rows.explicit else INTERACTION_EVENT
        weights.weigh(pd.Series([kind]), source=raw.location)
    return rows


# -- writing ---------------------------------------------------------------------------------
def insert_events(connection: Connection, frame: pd.DataFrame) -> int:
    """Store an event frame (see :func:`event_frame`) in the caller's transaction, skipping
    events whose id is stored already; returns how many were stored.

    Bulk paths: ``COPY`` on PostgreSQL, one prepared statement on SQLite, multi-row
    ``INSERT IGNORE`` on MariaDB. An import at least twice as large as the table already is
    (the first import, say) builds the (user, item) index afresh after the rows are in, rather than
    inserting a million keys into it one by one; on PostgreSQL the event-id constraint too.
    Both happen inside the transaction (SQLite and PostgreSQL change their schema in one), so
    a failed import leaves the indexes as they were; writers wait for it meanwhile.
    """
    if frame.empty:
        return 0
    received = time.time()
    dialect = connection.dialect.name
    stored = 0
    total = len(frame)
    largest = _largest_id(connection)
    bulk = dialect in ("postgresql", "sqlite") and total >= max(2 * largest, 10_000)
    if bulk:
        _drop_indexes(connection)
    if dialect == "postgresql":
        stored = _copy_postgres(
            connection, frame, received, unique=not bulk, empty=bulk and largest == 0
        )
    else:
        for start in range(0, total, IMPORT_CHUNK):
            part = frame.iloc[start : start + IMPORT_CHUNK]
            stored += _insert_rows(connection, part, received)
            progress.step("importing events", min(start + IMPORT_CHUNK, total), total)
    if bulk:
        progress.step("indexing events", 0, 1)
        _create_indexes(connection)
        progress.step("indexing events", 1, 1)
    return stored


def _largest_id(connection: Connection) -> int:
    return int(connection.execute(select(sa.func.max(events.c.id))).scalar_one() or 0)


def _drop_indexes(connection: Connection) -> None:
    connection.exec_driver_sql("DROP INDEX ix_events_user_item")
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("ALTER TABLE events DROP CONSTRAINT uq_events_event_id")


def _create_indexes(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Sorting a million keys in memory rather than in files (the default is 64 MB).
        connection.exec_driver_sql("SET LOCAL maintenance_work_mem = '512MB'")
        connection.exec_driver_sql(
            "ALTER TABLE events ADD CONSTRAINT uq_events_event_id UNIQUE (event_id)"
        )
    connection.exec_driver_sql("CREATE INDEX ix_events_user_item ON events (user_id, item_id)")


def _columns() -> str:
    return ", ".join((*_EVENT_COLUMNS, "received_at"))


def _rows(part: pd.DataFrame, received: float) -> list[tuple[Any, ...]]:
    return list(
        zip(
            *(part[name].tolist() for name in _EVENT_COLUMNS),
            [received] * len(part),
            strict=True,
        )
    )


def _insert_rows(connection: Connection, part: pd.DataFrame, received: float) -> int:
    dialect = connection.dialect.name
    if dialect == "sqlite":
        marks = ", ".join("?" * 7)
        statement = (
            f"INSERT INTO events ({_columns()}) VALUES ({marks}) ON CONFLICT (event_id) DO NOTHING"
        )
    elif dialect in ("mysql", "mariadb"):
        marks = ", ".join(["%s"] * 7)
        statement = f"INSERT IGNORE INTO events ({_columns()}) VALUES ({marks})"
    else:
        raise DataError(f"importing into a {dialect} database is not supported")
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        if dialect == "sqlite":
            # The unique index on event ids takes keys in random order: with SQLite's default
            # 2 MB page cache each insert reads pages back from the file.
            cursor.execute(f"PRAGMA cache_size = -{SQLITE_IMPORT_CACHE_KB}")
        cursor.executemany(statement, _rows(part, received))
        return int(cursor.rowcount)
    finally:
        cursor.close()


def _copy_postgres(
    connection: Connection,
    frame: pd.DataFrame,
    received: float,
    *,
    unique: bool,
    empty: bool = False,
) -> int:
    """COPY into a temporary table, then insert what is not stored yet in one statement, in
    the rows' order (by the constraint's ``ON CONFLICT`` when ``unique``, else by an
    anti-join on the ids); straight into the events table when it is ``empty`` (and its
    event-id constraint dropped: the ids of one import are distinct)."""
    raw = connection.connection.driver_connection
    total = len(frame)
    with raw.cursor() as cursor:  # type: ignore[union-attr]
        if empty:
            _copy_frame(cursor, frame, received, f"events ({_columns()})")
            return total
        cursor.execute(
            "CREATE TEMPORARY TABLE rekko_import (seq bigint, event_id text, "
            "user_id text, item_id text, event_type text, value double precision, "
            "occurred_at double precision, received_at double precision) ON COMMIT DROP"
        )
        _copy_frame(cursor, frame, received, f"rekko_import (seq, {_columns()})", seq=True)
        # Rows stored already are left out by a join first (much cheaper than failing
        # their inserts); ON CONFLICT covers the same ids stored meanwhile by someone else.
        source = (
            "rekko_import t WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = t.event_id)"
        )
        tail = "ORDER BY seq ON CONFLICT (event_id) DO NOTHING" if unique else "ORDER BY seq"
        cursor.execute(
            f"INSERT INTO events ({_columns()}) SELECT {_columns()} FROM {source} {tail}"
        )
        stored = int(cursor.rowcount)
        cursor.execute("DROP TABLE rekko_import")
        return stored


def _copy_frame(
    cursor: Any, frame: pd.DataFrame, received: float, target: str, *, seq: bool = False
) -> None:
    """COPY the event frame (and ``received_at``; the row positions first with ``seq``) as
    CSV into ``target``."""
    total = len(frame)
    with cursor.copy(f"COPY {target} FROM STDIN (FORMAT csv)") as copy:
        for start in range(0, total, IMPORT_CHUNK):
            part = frame.iloc[start : start + IMPORT_CHUNK].assign(received_at=received)
            copy.write(
                part.to_csv(header=False, index=seq, float_format="%.17g", lineterminator="\n")
            )
            progress.step("importing events", min(start + IMPORT_CHUNK, total), total)


def _feature_records(
    frame: pd.DataFrame | None, id_column: str, kinds: Mapping[str, str] | None
) -> list[tuple[str, dict[str, Any]]]:
    """(id, features) of a feature table: JSON-ready values, missing ones left out, columns of
    kind ``multi`` as lists (``a|b|c``), as the service stores them."""
    if frame is None:
        return []
    multi = {name for name, kind in (kinds or {}).items() if kind == "multi"}
    records: list[tuple[str, dict[str, Any]]] = []
    columns = [c for c in frame.columns if c != id_column]
    for row in frame.itertuples(index=False, name=None):
        values = dict(zip(frame.columns, row, strict=True))
        features: dict[str, Any] = {}
        for name in columns:
            value = values[name]
            if value is None or (isinstance(value, float) and np.isnan(value)):
                continue
            if name in multi and isinstance(value, str):
                value = [part for part in value.split("|") if part]
            features[str(name)] = value.item() if isinstance(value, np.generic) else value
        records.append((str(values[id_column]), features))
    return records


def _write_features(
    connection: Connection,
    items: Sequence[tuple[str, dict[str, Any]]],
    users: Sequence[tuple[str, dict[str, Any]]],
) -> tuple[int, int]:
    """Upsert feature records in the caller's transaction; returns (items, users) written."""
    written_items = sum(upsert_items_in(connection, [(i, f, None) for i, f in items]))
    return written_items, sum(upsert_users_in(connection, users))


@dataclass(frozen=True)
class ImportState:
    """The ``imports`` row of one source."""

    source_key: str
    fingerprint: str | None
    rows: int
    stored: int
    watermark: Any


def import_state(engine: Engine, key: str) -> ImportState | None:
    statement = select(imports_table).where(imports_table.c.source_key == key)
    with engine.connect() as connection:
        row = connection.execute(statement).first()
    if row is None:
        return None
    return ImportState(
        row.source_key, row.fingerprint, int(row.rows), int(row.stored), row.watermark
    )


def list_imports(engine: Engine) -> list[dict[str, Any]]:
    """Every imported or followed source, most recent first (for the dashboard and CLI)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(imports_table).order_by(imports_table.c.updated_at.desc())
        ).all()
    return [dict(row._mapping) for row in rows]


def _save_state(
    connection: Connection,
    key: str,
    source: str,
    *,
    fingerprint: str | None,
    rows: int,
    stored: int,
    watermark: Any = None,
) -> None:
    values = {
        "source": source,
        "fingerprint": fingerprint,
        "rows": rows,
        "stored": stored,
        "watermark": watermark,
        "updated_at": time.time(),
    }
    table = imports_table
    found = connection.execute(
        select(table.c.stored).where(table.c.source_key == key)
    ).scalar_one_or_none()
    if found is None:
        connection.execute(sa.insert(table).values(source_key=key, **values))
    else:
        values["stored"] = int(found) + stored
        connection.execute(sa.update(table).where(table.c.source_key == key).values(values))


# -- the import ------------------------------------------------------------------------------
def import_data(
    engine: Engine,
    spec: DataSpec,
    *,
    event_weights: EventWeights | str = "*=1",
    force: bool = False,
) -> ImportReport:
    """Import ``spec``'s interactions (and feature files) into the service database.

    Every row is checked first (a :class:`DataError` names the first bad one and nothing is
    stored); then items, users and events are written in one transaction. Events already
    stored by an earlier import of the same source are skipped; an unchanged file is not read
    at all unless ``force``. ``event_weights`` are the service's: an event type without a
    weight is an error here rather than in the first training job.
    """
    started = time.perf_counter()
    weights = EventWeights.parse(event_weights) if isinstance(event_weights, str) else event_weights
    source = describe(spec)
    key = source_key(spec)
    hashed = fingerprint(spec)
    previous = import_state(engine, key)
    unchanged = previous is not None and hashed is not None and previous.fingerprint == hashed
    if unchanged and not force:
        assert previous is not None
        return ImportReport(source, previous.rows, 0, previous.rows, 0, 0, 0.0, True)
    raw = spec.read()
    progress.step("checking rows", 0, 1)
    rows = check(raw, spec, weights)
    progress.step("checking rows", 1, 1)
    frame = event_frame(rows, key, now=time.time())
    items = _feature_records(raw.items, ITEM, spec.item_feature_kinds())
    users = _feature_records(raw.users, USER, spec.user_feature_kinds())
    with write_transaction(engine) as connection:
        written_items, written_users = _write_features(connection, items, users)
        stored = insert_events(connection, frame)
        _save_state(connection, key, source, fingerprint=hashed, rows=len(frame), stored=stored)
    seconds = time.perf_counter() - started
    report = ImportReport(
        source, len(frame), stored, len(frame) - stored, written_items, written_users, seconds
    )
    logger.info("imported %s", report.summary())
    return report


def import_features(engine: Engine, spec: DataSpec) -> tuple[int, int]:
    """Import only the item and user feature files of ``spec`` (for a followed table, whose
    rows :class:`Follower` takes in); returns (items, users) written."""
    from rekko.data.readers import read_features

    tables: dict[str, list[tuple[str, dict[str, Any]]]] = {ITEM: [], USER: []}
    sources: tuple[tuple[Literal["item", "user"], str | None, str | None, Any], ...] = (
        ("item", spec.items, spec.item_id_col, spec.item_feature_kinds()),
        ("user", spec.users, spec.user_id_col, spec.user_feature_kinds()),
    )
    for target, path, id_column, kinds in sources:
        if path is None:
            continue
        canonical = ITEM if target == "item" else USER
        frame = read_features(path, id_column=id_column or canonical, target=target, kinds=kinds)
        tables[canonical] = _feature_records(frame, canonical, kinds)
    if not tables[ITEM] and not tables[USER]:
        return 0, 0
    with write_transaction(engine) as connection:
        return _write_features(connection, tables[ITEM], tables[USER])


# -- following a table -----------------------------------------------------------------------
@dataclass(frozen=True)
class FollowReport:
    stored: int
    read: int
    watermark: Any


class Follower:
    """Takes in new rows of the application's own table as events.

    ``column`` only grows (an auto-increment id, or a time written as rows are added). Each
    :meth:`poll` reads the rows at or after the last value taken (rows written with the same
    value after the last poll are not missed; those taken already are skipped by their event
    ids) and stores them with the new last value in one transaction, so a restart neither loses
    nor doubles a row.
    """

    def __init__(self, spec: DataSpec, column: str, *, batch: int = 10_000) -> None:
        if spec.interactions is None or not is_database_url(spec.interactions):
            raise DataError("--follow needs --interactions to be a database URL")
        if spec.table is None:
            raise DataError("--follow needs --table (the table that the application writes to)")
        if not column.strip():
            raise DataError("--follow needs the name of a column that only grows")
        self.spec = spec
        self.column = column
        self.batch = batch
        followed = f"{source_key(spec)}:follow:{column}"
        self.key = hashlib.sha256(followed.encode()).hexdigest()[:32]
        self.source = f"{describe(spec)} following {column}"
        self._engine: Engine | None = None

    def _source(self) -> Engine:
        if self._engine is None:
            self._engine = sa.create_engine(str(self.spec.interactions), pool_pre_ping=True)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def _read(self, watermark: Any) -> pd.DataFrame:
        engine = self._source()
        with engine.connect() as connection:
            table = sa.Table(str(self.spec.table), sa.MetaData(), autoload_with=connection)
            if self.column not in table.c:
                raise DataError(
                    f"--follow column {self.column!r} is not in table {self.spec.table!r} "
                    f"(columns: {', '.join(table.c.keys())})"
                )
            followed = table.c[self.column]
            statement = select(table).order_by(followed).limit(self.batch)
            if watermark is not None:
                statement = statement.where(followed >= watermark)
            rows = connection.execute(statement).all()
            names = list(table.c.keys())
        return pd.DataFrame.from_records(rows, columns=names, coerce_float=True)

    def catch_up(self, engine: Engine, weights: EventWeights) -> int:
        """Poll until the rows written so far are all taken in; returns events stored."""
        stored = 0
        while True:
            report = self.poll(engine, weights)
            stored += report.stored
            if report.read < self.batch or not report.stored:
                return stored

    def poll(self, engine: Engine, weights: EventWeights) -> FollowReport:
        """Read and store the rows that are new since the last poll (one batch at most)."""
        state = import_state(engine, self.key)
        watermark = state.watermark if state is not None else None
        table = self._read(watermark)
        if table.empty:
            return FollowReport(0, 0, watermark)
        last = table[self.column].iloc[-1]
        last_value = last.item() if isinstance(last, np.generic) else last
        if isinstance(last_value, pd.Timestamp):
            last_value = last_value.isoformat()
        mapping = self.spec.columns()
        picked = mapping.resolve([str(c) for c in table.columns], source=self.source)
        frame = canonical_interactions(table[list(picked)].rename(columns=picked))
        raw = RawData(frame, Location(self.source, first_row=1), None, None, None, None, "rows")
        rows = check(raw, self.spec, weights)
        # The followed column's value is part of each event's identity: rows of the same
        # content written at different times are different events.
        events_of = event_frame(
            rows, self.key, now=time.time(), identity=table[self.column].astype(str).to_numpy()
        )
        with write_transaction(engine) as connection:
            stored = insert_events(connection, events_of)
            if not stored and last_value == watermark:
                return FollowReport(0, len(frame), watermark)  # only the last row again
            _save_state(
                connection,
                self.key,
                self.source,
                fingerprint=None,
                rows=(state.rows if state else 0) + stored,
                stored=stored,
                watermark=last_value,
            )
        if stored:
            logger.debug("took %d new row(s) from %s", stored, self.source)
        return FollowReport(stored, len(frame), last_value)
