"""Helpers for testing code that uses the service: settings for a temporary folder, throwaway
PostgreSQL/MariaDB databases, waiting for jobs. Used by rekko's own tests."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from rekko.service.settings import ServeSettings

SERVER_URLS = {
    "postgresql": os.environ.get(
        "REKKO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get("REKKO_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}


def settings_for(folder: Path, **overrides: Any) -> ServeSettings:
    """Settings for a test: SQLite and models under ``folder``, a small demo, training in a
    thread, no background schedule, fast sync."""
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{folder / 'rekko.db'}",
        "model_dir": folder / "models",
        "training_executor": "thread",
        "demo_users": 120,
        "demo_items": 80,
        "sync_interval_s": 0.2,
        "sqlite_synchronous": "NORMAL",
    }
    values.update(overrides)
    return ServeSettings(**values)


@contextmanager
def temporary_database(kind: Literal["postgresql", "mariadb"]) -> Iterator[str]:
    """A new, uniquely named database on a real server, dropped afterwards; yields its URL."""
    server = make_url(SERVER_URLS[kind])
    name = f"rekko_test_{secrets.token_hex(6)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}"))
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            if kind == "postgresql":
                connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                connection.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


def wait_for_job(client: Any, job_id: str, timeout: float = 60.0, **headers: str) -> Any:
    """Poll ``GET /training/jobs/{job_id}`` until it has finished; returns its JSON."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/training/jobs/{job_id}", headers=headers or None).json()
        if body.get("status") in ("succeeded", "failed"):
            return body
        if time.monotonic() > deadline:
            raise TimeoutError(f"training job {job_id} did not finish in {timeout} s: {body}")
        time.sleep(0.05)
