"""The service database: tables of the catalogue, users, events, impressions and jobs.

Written with SQLAlchemy Core so that the same definitions serve SQLite, PostgreSQL and
MariaDB. The Alembic migrations under ``migrations/versions`` create exactly these tables (a
test compares them); change both together.

Times are unix seconds as double precision floats (``occurred_at``, ``served_at``...), except
``updated_at`` of catalogue rows, which is integer microseconds so that incremental reloads
can ask for "changed since" without losing rows to rounding.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

#: Longest external id the service accepts (VARCHAR length, indexable on MariaDB utf8mb4).
ID_LENGTH = 255

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

#: Auto-incrementing 64-bit key (SQLite needs INTEGER PRIMARY KEY to alias the rowid).
RowId = BigInteger().with_variant(Integer(), "sqlite")

items = Table(
    "items",
    metadata,
    Column("item_id", String(ID_LENGTH), primary_key=True),
    Column("features", JSON(), nullable=False),
    # active | hidden | deleted; hidden and deleted items are never recommended.
    Column("status", String(16), nullable=False),
    Column("updated_at", BigInteger(), nullable=False, index=True),
)

users = Table(
    "users",
    metadata,
    Column("user_id", String(ID_LENGTH), primary_key=True),
    Column("features", JSON(), nullable=False),
    Column("updated_at", BigInteger(), nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    # The client's id for idempotent replays; NULL when the client gave none.
    Column("event_id", String(ID_LENGTH), nullable=True, unique=True),
    Column("user_id", String(ID_LENGTH), nullable=False),
    Column("item_id", String(ID_LENGTH), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("value", Double(), nullable=False),
    Column("occurred_at", Double(), nullable=False),
    Column("received_at", Double(), nullable=False),
    Index("ix_events_user_item", "user_id", "item_id"),
    sqlite_autoincrement=True,
)

impressions = Table(
    "impressions",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("request_id", String(32), nullable=False),
    Column("user_id", String(ID_LENGTH), nullable=False),
    Column("item_id", String(ID_LENGTH), nullable=False),
    Column("rank", Integer(), nullable=False),
    Column("model_version", String(128), nullable=False),
    # Read by time only (online metrics join the events through their own index): one index,
    # since every list served writes ten rows.
    Column("served_at", Double(), nullable=False, index=True),
    sqlite_autoincrement=True,
)

training_jobs = Table(
    "training_jobs",
    metadata,
    Column("job_id", String(32), primary_key=True),
    # queued | running | succeeded | failed
    Column("status", String(16), nullable=False),
    # api | schedule | events | bootstrap
    Column("trigger", String(16), nullable=False),
    Column("algorithm", String(64), nullable=False),
    Column("params", JSON(), nullable=False),
    Column("version", String(128), nullable=True),
    Column("activated", Boolean(), nullable=False),
    Column("reason", Text(), nullable=True),
    Column("error", Text(), nullable=True),
    Column("metrics", JSON(), nullable=True),
    Column("events_watermark", BigInteger(), nullable=True),
    Column("created_at", Double(), nullable=False, index=True),
    Column("started_at", Double(), nullable=True),
    Column("finished_at", Double(), nullable=True),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(64), nullable=False),
    Column("expires_at", Double(), nullable=False),
)

imports = Table(
    "imports",
    metadata,
    # A hash of the source's description (path, or URL with table / query): one row a source.
    Column("source_key", String(64), primary_key=True),
    # The source as the user named it (a database URL without its password).
    Column("source", Text(), nullable=False),
    # What the source held at the last import (hash of its files; NULL for database sources,
    # which are compared row by row).
    Column("fingerprint", String(64), nullable=True),
    Column("rows", BigInteger(), nullable=False),
    Column("stored", BigInteger(), nullable=False),
    # The last value of a followed column (JSON: a number or a text), NULL when not followed.
    Column("watermark", JSON(), nullable=True),
    Column("updated_at", Double(), nullable=False),
)
