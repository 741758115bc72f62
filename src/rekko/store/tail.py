"""Following the events table: which stored events a served model has not seen yet.

Event row ids grow, but on PostgreSQL and MariaDB two transactions can commit out of id order,
and conflicting inserts leave gaps. A tail therefore keeps a *floor* (every id at or below it is
dealt with) and the set of ids above it already applied. The floor moves up over contiguous
applied ids at once, and over a gap once the gap has stayed open for ``settle_s`` seconds (a
transaction that has not committed by then is taken as rolled back). On SQLite, where writes
are serialised, ids arrive in order and the floor simply follows the newest event.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from sqlalchemy import Engine

from rekko.store.repository import StoredEvent, events_after


class EventTail:
    """The position of one consumer (a loaded model) in the events table."""

    def __init__(self, floor: int, *, settle_s: float = 10.0) -> None:
        self.floor = floor
        self.settle_s = settle_s
        self._applied: set[int] = set()
        self._gap: tuple[int, float] | None = None  # (floor when the gap was seen, when)

    def fetch(self, engine: Engine, limit: int = 50_000) -> list[StoredEvent]:
        """Stored events this consumer has not applied yet, in id order."""
        return [
            row for row in events_after(engine, self.floor, limit) if row.id not in self._applied
        ]

    def mark(self, ids: Iterable[int], now: float | None = None) -> None:
        """Record ``ids`` as applied and move the floor up as far as it may go."""
        now = time.monotonic() if now is None else now
        self._applied.update(i for i in ids if i > self.floor)
        for row_id in sorted(self._applied):
            if row_id != self.floor + 1:
                if self._gap is None or self._gap[0] != self.floor:
                    self._gap = (self.floor, now)
                if now - self._gap[1] < self.settle_s:
                    break
            self.floor = row_id
            self._gap = None
        self._applied = {i for i in self._applied if i > self.floor}

    @property
    def pending_ids(self) -> int:
        """Ids above the floor already applied (waiting for a gap below them to settle)."""
        return len(self._applied)
