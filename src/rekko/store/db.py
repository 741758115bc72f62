"""Engines and migrations for SQLite (the default), PostgreSQL and MariaDB.

SQLite runs in WAL mode so that readers never wait for the writer; write transactions start
with ``BEGIN IMMEDIATE`` (see :func:`write_transaction`) so that two writers queue on the
busy timeout instead of failing half-way. ``synchronous=FULL`` (the default here) makes a
committed transaction durable across a power loss, which is what "stored before the response"
promises; ``NORMAL`` is faster and only durable across a crash of the process.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SqliteSync = Literal["FULL", "NORMAL"]

_IMMEDIATE = "rekko_write"


def create_db_engine(url: str, *, sqlite_synchronous: SqliteSync = "FULL") -> Engine:
    """An engine for ``url``; for SQLite files the folder is created and WAL mode set."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True, pool_recycle=3600)
    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    if sqlite_synchronous not in ("FULL", "NORMAL"):
        raise ValueError(f"sqlite_synchronous must be FULL or NORMAL, got {sqlite_synchronous!r}")
    engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own BEGIN handling is switched off; _on_begin emits ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={sqlite_synchronous}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(_IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: committed on success, rolled back on error.

    On SQLite it takes the write lock at once (``BEGIN IMMEDIATE``), so concurrent writers wait
    for each other instead of failing when a read lock cannot be upgraded.
    """
    with engine.connect() as connection:
        connection.execution_options(**{_IMMEDIATE: True})
        with connection.begin():
            yield connection


def alembic_config() -> Config:
    """An Alembic configuration built in code, pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


#: Key of the lock that serialises migrations of processes starting at once (PostgreSQL
#: advisory lock number, MariaDB named lock); SQLite's BEGIN IMMEDIATE does it there.
MIGRATION_LOCK = 0x72656B6B6F  # "rekko"
MIGRATION_LOCK_WAIT_S = 300


def upgrade_database(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (idempotent; safe to call at every start, also from
    several processes at once: they take turns, and the later ones find nothing to do)."""
    config = alembic_config()
    dialect = engine.dialect.name
    with engine.connect() as connection:
        connection.execution_options(**{_IMMEDIATE: True})
        if dialect == "postgresql":
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
        elif dialect in ("mysql", "mariadb"):
            got = connection.execute(
                text("SELECT GET_LOCK(:key, :wait)"),
                {"key": f"rekko-{MIGRATION_LOCK}", "wait": MIGRATION_LOCK_WAIT_S},
            ).scalar()
            if got != 1:
                raise TimeoutError(
                    f"another process held the migration lock for {MIGRATION_LOCK_WAIT_S} s"
                )
        connection.commit()  # the session-level lock stays; the migration gets its own BEGIN
        try:
            with connection.begin():
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
        finally:
            if dialect == "postgresql":
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
            elif dialect in ("mysql", "mariadb"):
                connection.execute(
                    text("SELECT RELEASE_LOCK(:key)"), {"key": f"rekko-{MIGRATION_LOCK}"}
                )
            connection.commit()
    logger.info("database schema at %s (%s)", revision, engine.url.render_as_string())


def current_revision(engine: Engine) -> str | None:
    """The schema revision recorded in the database (``None`` before the first migration)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return MigrationContext.configure(connection).get_current_revision()
