"""Reading and writing the service database. Every function takes the engine it works on.

Functions here hold no state and know nothing of HTTP; the service and the training jobs call
them, and the tests call them directly against SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
from sqlalchemy import (
    Connection,
    Engine,
    Insert,
    Integer,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from rekko.store.db import write_transaction
from rekko.store.schema import events, impressions, items, leases, training_jobs, users

#: Rows per statement when looking up or inserting many ids (below every driver's limit).
CHUNK = 500

ItemStatus = Literal["active", "hidden", "deleted"]
JobStatus = Literal["queued", "running", "succeeded", "failed"]


def now_us() -> int:
    """Current time in integer microseconds (catalogue ``updated_at``)."""
    return time.time_ns() // 1000


def _chunks(values: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


# -- catalogue and users -------------------------------------------------------------------
@dataclass(frozen=True)
class ItemRecord:
    item_id: str
    features: dict[str, Any]
    status: ItemStatus
    updated_at: int


def _upsert(
    engine: Engine,
    table: Any,
    key: str,
    rows: Sequence[Mapping[str, Any]],
) -> tuple[int, int]:
    """Insert new keys and update existing ones; returns (inserted, updated).

    Portable across the three databases (no dialect upsert); a concurrent insert of the same
    new key makes the transaction retry once.
    """
    for attempt in range(2):
        try:
            with write_transaction(engine) as connection:
                return _upsert_in(connection, table, key, rows)
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


def _upsert_in(
    connection: Connection, table: Any, key: str, rows: Sequence[Mapping[str, Any]]
) -> tuple[int, int]:
    """:func:`_upsert` inside the caller's transaction."""
    latest: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        latest[row[key]] = row  # the last row of a batch wins for a repeated key
    keys = list(latest)
    existing: set[str] = set()
    for part in _chunks(keys):
        found = connection.execute(select(table.c[key]).where(table.c[key].in_(part)))
        existing.update(found.scalars())
    fresh = [dict(latest[k]) for k in keys if k not in existing]
    changed = [
        {"_key": k, **{f"_{name}": v for name, v in latest[k].items()}}
        for k in keys
        if k in existing
    ]
    if fresh:
        connection.execute(insert(table), fresh)
    if changed:
        names = [name for name in latest[keys[0]] if name != key]
        statement = (
            update(table)
            .where(table.c[key] == bindparam("_key"))
            .values({name: bindparam(f"_{name}") for name in names})
        )
        connection.execute(statement, changed)
    return len(fresh), len(changed)


ItemRow = tuple[str, Mapping[str, Any], "ItemStatus | None"]


def upsert_items(engine: Engine, records: Sequence[ItemRow]) -> tuple[int, int]:
    """Create or replace items ``(item_id, features, status)``; ``None`` status keeps the
    item's status (new items are active). Deleted items stay deleted, without features.
    Returns (inserted, updated)."""
    for attempt in range(2):
        try:
            with write_transaction(engine) as connection:
                return upsert_items_in(connection, records)
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


def upsert_items_in(connection: Connection, records: Sequence[ItemRow]) -> tuple[int, int]:
    """:func:`upsert_items` inside the caller's (write) transaction, which also reads the
    statuses it keeps, so that a concurrent delete cannot be undone."""
    stamp = now_us()
    statuses: dict[str, str] = {}
    ids = [record[0] for record in records]
    for part in _chunks(ids):
        found = connection.execute(
            select(items.c.item_id, items.c.status).where(items.c.item_id.in_(part))
        )
        statuses.update({row.item_id: row.status for row in found})
    rows = [
        {
            "item_id": item_id,
            "features": {} if statuses.get(item_id) == "deleted" else dict(features),
            "status": "deleted"
            if statuses.get(item_id) == "deleted"
            else status or statuses.get(item_id, "active"),
            "updated_at": stamp,
        }
        for item_id, features, status in records
    ]
    return _upsert_in(connection, items, "item_id", rows)


def set_item_status(engine: Engine, item_id: str, status: ItemStatus) -> ItemStatus | None:
    """Hide, delete or restore an item; returns its status afterwards (``None`` when it is not
    in the catalogue). A deleted item stays deleted: hiding or showing it changes nothing."""
    with write_transaction(engine) as connection:
        values: dict[str, Any] = {"status": status, "updated_at": now_us()}
        statement = update(items).where(items.c.item_id == item_id)
        if status == "deleted":
            values["features"] = {}
        else:
            statement = statement.where(items.c.status != "deleted")
        if connection.execute(statement.values(values)).rowcount:
            return status
        found = connection.execute(select(items.c.status).where(items.c.item_id == item_id))
        current: ItemStatus | None = found.scalar_one_or_none()
        return current


def get_item(engine: Engine, item_id: str) -> ItemRecord | None:
    with engine.connect() as connection:
        row = connection.execute(select(items).where(items.c.item_id == item_id)).first()
    if row is None:
        return None
    return ItemRecord(row.item_id, dict(row.features), row.status, int(row.updated_at))


def items_changed_since(engine: Engine, since_us: int) -> list[ItemRecord]:
    """Items updated at or after ``since_us`` (all items for 0), oldest change first."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(items).where(items.c.updated_at >= since_us).order_by(items.c.updated_at)
        )
        return [
            ItemRecord(row.item_id, dict(row.features), row.status, int(row.updated_at))
            for row in rows
        ]


def upsert_users(
    engine: Engine, records: Sequence[tuple[str, Mapping[str, Any]]]
) -> tuple[int, int]:
    """Create or replace users' features. Returns (inserted, updated)."""
    return _upsert(engine, users, "user_id", _user_rows(records))


def upsert_users_in(
    connection: Connection, records: Sequence[tuple[str, Mapping[str, Any]]]
) -> tuple[int, int]:
    """:func:`upsert_users` inside the caller's transaction."""
    return _upsert_in(connection, users, "user_id", _user_rows(records))


def _user_rows(records: Sequence[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    stamp = now_us()
    return [
        {"user_id": user_id, "features": dict(features), "updated_at": stamp}
        for user_id, features in records
    ]


def get_user(engine: Engine, user_id: str) -> dict[str, Any] | None:
    with engine.connect() as connection:
        row = connection.execute(select(users.c.features).where(users.c.user_id == user_id)).first()
    return None if row is None else dict(row.features)


# -- events --------------------------------------------------------------------------------
@dataclass(frozen=True)
class NewEvent:
    """An event as received; ``event_id`` makes a replay of it a no-op."""

    user_id: str
    item_id: str
    event_type: str
    value: float
    occurred_at: float
    event_id: str | None = None


@dataclass(frozen=True)
class StoredEvent:
    id: int
    user_id: str
    item_id: str
    event_type: str
    value: float


@dataclass(frozen=True)
class StoreResult:
    stored: int
    duplicates: int


def _insert_ignoring_duplicates(engine: Engine) -> Insert:
    """INSERT that skips rows whose ``event_id`` is already stored (a concurrent replay)."""
    dialect = engine.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(events).on_conflict_do_nothing(index_elements=["event_id"])
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(events).on_conflict_do_nothing(index_elements=["event_id"])
    if dialect in ("mysql", "mariadb"):
        return insert(events).prefix_with("IGNORE")
    return insert(events)


def add_events(engine: Engine, batch: Sequence[NewEvent]) -> StoreResult:
    """Store a batch in one transaction; events whose ``event_id`` is already stored (or
    repeated in the batch) are counted as duplicates and not stored again."""
    received = time.time()
    seen_ids: set[str] = set()
    duplicates = 0
    with write_transaction(engine) as connection:
        given = list({e.event_id for e in batch if e.event_id is not None})
        for part in _chunks(given):
            found = connection.execute(select(events.c.event_id).where(events.c.event_id.in_(part)))
            seen_ids.update(found.scalars())
        rows = []
        for new in batch:
            if new.event_id is not None:
                if new.event_id in seen_ids:
                    duplicates += 1
                    continue
                seen_ids.add(new.event_id)
            rows.append(
                {
                    "event_id": new.event_id,
                    "user_id": new.user_id,
                    "item_id": new.item_id,
                    "event_type": new.event_type,
                    "value": float(new.value),
                    "occurred_at": float(new.occurred_at),
                    "received_at": received,
                }
            )
        if rows:
            statement = (
                _insert_ignoring_duplicates(engine)
                if any(row["event_id"] is not None for row in rows)
                else insert(events)
            )
            connection.execute(statement, rows)
    return StoreResult(stored=len(rows), duplicates=duplicates)


def count_events(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(events)).scalar_one())


def last_event_id(engine: Engine) -> int:
    """The highest event row id (0 when there are none)."""
    with engine.connect() as connection:
        value = connection.execute(select(func.max(events.c.id))).scalar_one()
    return int(value or 0)


def count_events_after(engine: Engine, row_id: int) -> int:
    with engine.connect() as connection:
        statement = select(func.count()).select_from(events).where(events.c.id > row_id)
        return int(connection.execute(statement).scalar_one())


def events_after(engine: Engine, row_id: int, limit: int = 50_000) -> list[StoredEvent]:
    """Events with a row id above ``row_id``, in id order (at most ``limit``)."""
    statement = (
        select(events.c.id, events.c.user_id, events.c.item_id, events.c.event_type, events.c.value)
        .where(events.c.id > row_id)
        .order_by(events.c.id)
        .limit(limit)
    )
    with engine.connect() as connection:
        return [
            StoredEvent(int(r.id), r.user_id, r.item_id, r.event_type, float(r.value))
            for r in connection.execute(statement)
        ]


def user_items(engine: Engine, user_id: str, limit: int = 1000) -> list[str]:
    """Items a user interacted with, most recent first (distinct)."""
    statement = (
        select(events.c.item_id, func.max(events.c.occurred_at).label("last"))
        .where(events.c.user_id == user_id)
        .group_by(events.c.item_id)
        .order_by(func.max(events.c.occurred_at).desc())
        .limit(limit)
    )
    with engine.connect() as connection:
        return [row.item_id for row in connection.execute(statement)]


@dataclass(frozen=True)
class TrainingData:
    """What a training job reads: raw frames with external ids, and the last event row id."""

    events: pd.DataFrame  # user_id, item_id, event, value, timestamp
    items: pd.DataFrame | None  # item_id + one column per feature
    users: pd.DataFrame | None  # user_id + one column per feature
    watermark: int


def training_data(engine: Engine) -> TrainingData:
    """Events, active/hidden items and users, as of one moment (events up to the watermark).

    Events of deleted items are left out: those items are never recommended again.
    """
    with engine.connect() as connection:
        watermark = int(connection.execute(select(func.max(events.c.id))).scalar_one() or 0)
        deleted = select(items.c.item_id).where(items.c.status == "deleted")
        rows = connection.execute(
            select(
                events.c.user_id,
                events.c.item_id,
                events.c.event_type,
                events.c.value,
                events.c.occurred_at,
            )
            .where(events.c.id <= watermark)
            .where(events.c.item_id.not_in(deleted))
            .order_by(events.c.id)
        ).all()
        item_rows = connection.execute(
            select(items.c.item_id, items.c.features).where(items.c.status != "deleted")
        ).all()
        user_rows = connection.execute(select(users.c.user_id, users.c.features)).all()
    frame = pd.DataFrame(
        rows, columns=pd.Index(["user_id", "item_id", "event", "value", "timestamp"])
    )
    return TrainingData(
        events=frame,
        items=_feature_frame("item_id", item_rows),
        users=_feature_frame("user_id", user_rows),
        watermark=watermark,
    )


def _feature_frame(id_column: str, rows: Sequence[Any]) -> pd.DataFrame | None:
    if not rows:
        return None
    records = [{**dict(row[1]), id_column: row[0]} for row in rows]
    frame = pd.DataFrame.from_records(records)
    columns = [id_column, *(c for c in frame.columns if c != id_column)]
    return frame[columns]


# -- impressions and online evaluation -----------------------------------------------------
@dataclass(frozen=True)
class Impression:
    request_id: str
    user_id: str
    item_id: str
    rank: int
    model_version: str
    served_at: float


def add_impressions(engine: Engine, batch: Sequence[Impression]) -> None:
    if not batch:
        return
    with write_transaction(engine) as connection:
        connection.execute(
            insert(impressions),
            [
                {
                    "request_id": row.request_id,
                    "user_id": row.user_id,
                    "item_id": row.item_id,
                    "rank": row.rank,
                    "model_version": row.model_version,
                    "served_at": row.served_at,
                }
                for row in batch
            ],
        )


def _period(engine: Engine, seconds: Any, bucket_s: int) -> Any:
    """The number of the ``bucket_s`` period a time in epoch seconds falls in (rounded down:
    SQLite's CAST truncates, the servers' FLOOR rounds down)."""
    if engine.dialect.name == "sqlite":
        return cast(seconds / bucket_s, Integer)
    return func.floor(seconds / bucket_s)


def online_metrics(
    engine: Engine,
    *,
    since: float,
    window_s: float,
    positive_events: Sequence[str] | None = None,
    bucket_s: int | None = None,
) -> list[dict[str, Any]]:
    """Per model version: impressions served since ``since``, how many were followed by a
    positive event (same user and item, ``value > 0``, within ``window_s`` after serving), and
    the follow rate. ``positive_events`` limits which event types count. With ``bucket_s``,
    one row per version and period of that many seconds (``period``: its start, epoch s)."""
    follow = and_(
        events.c.user_id == impressions.c.user_id,
        events.c.item_id == impressions.c.item_id,
        events.c.occurred_at >= impressions.c.served_at,
        events.c.occurred_at <= impressions.c.served_at + window_s,
        events.c.value > 0,
    )
    if positive_events:
        follow = and_(follow, events.c.event_type.in_(list(positive_events)))
    followed = case((exists(select(events.c.id).where(follow)), 1), else_=0)
    keys: list[Any] = [impressions.c.model_version]
    if bucket_s is not None:
        keys.append(_period(engine, impressions.c.served_at, bucket_s).label("period"))
    statement = (
        select(
            *keys,
            func.count().label("impressions"),
            func.sum(followed).label("followed"),
            func.count(func.distinct(impressions.c.request_id)).label("requests"),
        )
        .where(impressions.c.served_at >= since)
        .group_by(*keys)
        .order_by(*keys)
    )
    with engine.connect() as connection:
        rows = connection.execute(statement).all()
    return [
        {
            "model_version": row.model_version,
            **({"period": int(row.period) * bucket_s} if bucket_s is not None else {}),
            "requests": int(row.requests),
            "impressions": int(row.impressions),
            "followed": int(row.followed or 0),
            "follow_rate": float(row.followed or 0) / row.impressions if row.impressions else 0.0,
        }
        for row in rows
    ]


# -- training jobs -------------------------------------------------------------------------
def create_job(
    engine: Engine, job_id: str, *, trigger: str, algorithm: str, params: Mapping[str, Any]
) -> None:
    with write_transaction(engine) as connection:
        connection.execute(
            insert(training_jobs).values(
                job_id=job_id,
                status="queued",
                trigger=trigger,
                algorithm=algorithm,
                params=dict(params),
                activated=False,
                created_at=time.time(),
            )
        )


def update_job(engine: Engine, job_id: str, **values: Any) -> None:
    with write_transaction(engine) as connection:
        connection.execute(
            update(training_jobs).where(training_jobs.c.job_id == job_id).values(**values)
        )


def _job_dict(row: Any) -> dict[str, Any]:
    return dict(row._mapping)


def get_job(engine: Engine, job_id: str) -> dict[str, Any] | None:
    with engine.connect() as connection:
        row = connection.execute(
            select(training_jobs).where(training_jobs.c.job_id == job_id)
        ).first()
    return None if row is None else _job_dict(row)


def list_jobs(engine: Engine, limit: int = 50) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(training_jobs).order_by(training_jobs.c.created_at.desc()).limit(limit)
        )
        return [_job_dict(row) for row in rows]


def last_finished_job(engine: Engine) -> dict[str, Any] | None:
    """The most recent job that finished, successfully or not."""
    with engine.connect() as connection:
        row = connection.execute(
            select(training_jobs)
            .where(training_jobs.c.finished_at.is_not(None))
            .order_by(training_jobs.c.finished_at.desc())
            .limit(1)
        ).first()
    return None if row is None else _job_dict(row)


def unfinished_jobs(engine: Engine) -> list[dict[str, Any]]:
    """Queued and running jobs, running ones first, then the oldest."""
    running_first = case((training_jobs.c.status == "running", 0), else_=1)
    with engine.connect() as connection:
        rows = connection.execute(
            select(training_jobs)
            .where(training_jobs.c.status.in_(["queued", "running"]))
            .order_by(running_first, training_jobs.c.created_at)
        )
        return [_job_dict(row) for row in rows]


def fail_stale_jobs(engine: Engine, older_than: float) -> int:
    """Mark queued/running jobs created before ``older_than`` as failed (a process died)."""
    with write_transaction(engine) as connection:
        result = connection.execute(
            update(training_jobs)
            .where(training_jobs.c.status.in_(["queued", "running"]))
            .where(training_jobs.c.created_at < older_than)
            .values(
                status="failed",
                error="abandoned (the process running it stopped)",
                finished_at=time.time(),
            )
        )
        return int(result.rowcount)


# -- leases: one holder at a time across processes -----------------------------------------
def try_acquire_lease(engine: Engine, name: str, holder: str, ttl_s: float) -> bool:
    """Take (or renew) the lease ``name`` for ``ttl_s`` seconds; ``False`` if another holder
    has it and it has not expired."""
    now = time.time()
    try:
        with write_transaction(engine) as connection:
            result = connection.execute(
                update(leases)
                .where(leases.c.name == name)
                .where((leases.c.expires_at < now) | (leases.c.holder == holder))
                .values(holder=holder, expires_at=now + ttl_s)
            )
            if result.rowcount:
                return True
            taken = connection.execute(select(leases.c.name).where(leases.c.name == name)).first()
            if taken is not None:
                return False
            connection.execute(
                insert(leases).values(name=name, holder=holder, expires_at=now + ttl_s)
            )
            return True
    except IntegrityError:
        return False


def release_lease(engine: Engine, name: str, holder: str) -> None:
    with write_transaction(engine) as connection:
        connection.execute(
            update(leases)
            .where(leases.c.name == name)
            .where(leases.c.holder == holder)
            .values(expires_at=0.0)
        )


def is_empty(engine: Engine) -> bool:
    """No events and no items yet (a fresh database)."""
    with engine.connect() as connection:
        has_event = connection.execute(select(events.c.id).limit(1)).first() is not None
        has_item = connection.execute(select(items.c.item_id).limit(1)).first() is not None
    return not has_event and not has_item
