"""Durable state of the service: the database (events, catalogue, jobs) and model versions.

* :mod:`rekko.store.db`: engines (SQLite in WAL mode by default, PostgreSQL, MariaDB) and the
  Alembic migrations shipped in ``migrations/``, run in code at start-up;
* :mod:`rekko.store.repository`: functions that read and write the tables;
* :mod:`rekko.store.tail`: following the events table from a served model;
* :mod:`rekko.store.registry`: model versions on disk and the active-version pointer.
"""

from __future__ import annotations

from rekko.store.db import create_db_engine, upgrade_database, write_transaction
from rekko.store.registry import ModelRegistry, Pointer, Split, VersionInfo

__all__ = [
    "ModelRegistry",
    "Pointer",
    "Split",
    "VersionInfo",
    "create_db_engine",
    "upgrade_database",
    "write_transaction",
]
