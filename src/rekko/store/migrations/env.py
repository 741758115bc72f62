"""Alembic environment: runs on the connection handed over in ``config.attributes``.

``rekko.store.db.upgrade_database`` passes its connection; when run from the ``alembic``
command line with ``alembic.ini`` beside this file, the URL comes from ``sqlalchemy.url`` or
the ``REKKO_DATABASE_URL`` environment variable.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

from rekko.store.schema import metadata

config = context.config


def _url() -> str:
    url = os.environ.get("REKKO_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set REKKO_DATABASE_URL or sqlalchemy.url to run migrations")
    return url


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from rekko.store.db import create_db_engine

    engine = create_db_engine(_url())
    with engine.begin() as fresh:
        _run(fresh)
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
