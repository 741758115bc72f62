"""The models a worker serves, and how each kind of request is answered.

A :class:`ServedModel` wraps one loaded model version, its position in the events table
(:class:`~rekko.store.tail.EventTail`) and the history of users the model cannot fold in. It
holds its model *by reference*: events are folded into a copy
(:meth:`~rekko.models.base.Recommender.copy`) that then replaces the reference, so requests
never wait for a fold-in and never see a half-updated model. The :class:`ModelPool` holds the
active version (and the second version of an A/B split) the same way: activating a version
loads it completely first and then replaces the reference.

Every request goes through the model's public interface:

* known user: :meth:`~rekko.models.base.Recommender.rank` (``fallback: null``);
* user the model does not know but who has events since it was trained: their items as the
  basket of a :class:`~rekko.models.query.Query` (``fallback: history``);
* anyone else, and anonymous requests: :meth:`~rekko.models.base.Recommender.rank_query`, the
  model's own query step when it has one (``fallback: null``), else the shared routes of
  :mod:`rekko.models.cold` (``basket``, ``keywords``, ``preferences``, ``popularity``);
* similar items: :meth:`~rekko.models.base.Recommender.rank_similar` when the model has the
  ability, else co-occurrence (``fallback: co-occurrence``).

Filters, excluded items and hidden/deleted items apply to every answer.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine

from rekko.constraints import Constraint
from rekko.data.dataset import MAX_VALUE, EventWeights
from rekko.data.idmap import UNKNOWN
from rekko.errors import ModelError, UnknownIdError
from rekko.models.base import Recommender
from rekko.models.cold import ROUTES
from rekko.models.query import PreferenceError, Query, QueryRanking
from rekko.service.errors import public_message
from rekko.store.registry import ModelRegistry, Split, VersionInfo
from rekko.store.repository import ItemRecord, StoredEvent, items_changed_since, now_us
from rekko.store.tail import EventTail

__all__ = ["ModelPool", "PreferenceError", "Ranked", "ServedModel", "bucket"]

logger = logging.getLogger(__name__)

#: Users remembered per model when the model cannot fold them in (their latest items).
MAX_PENDING_USERS = 100_000
MAX_PENDING_ITEMS = 200


@dataclass(frozen=True)
class Ranked:
    """A ranked list as the API returns it."""

    item_ids: list[str]
    scores: list[float]
    version: str
    fallback: str | None = None
    note: str | None = None


def bucket(user_id: str, salt: str) -> float:
    """A stable number in [0, 1) for a user (A/B assignment; same user, same arm)."""
    digest = hashlib.sha256(f"{salt}\x00{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


class ServedModel:
    """One loaded model version, safe to use from several threads without a lock: readers
    take :attr:`model` once per request; fold-in swaps in a new one."""

    def __init__(
        self,
        info: VersionInfo,
        model: Recommender,
        weights: EventWeights,
        *,
        settle_s: float = 10.0,
    ) -> None:
        if not model.is_fitted:
            raise ModelError(f"model version {info.version!r} is not trained")
        self.info = info
        self.version = info.version
        self.model = model
        self.weights = weights
        self._sync_lock = threading.Lock()
        self.tail = EventTail(info.events_watermark, settle_s=settle_s)
        self.pending: OrderedDict[str, list[str]] = OrderedDict()

    # -- helpers ---------------------------------------------------------------------------
    @property
    def n_items(self) -> int:
        return len(self.model.fitted().items)

    def knows_user(self, user_id: str) -> bool:
        return user_id in self.model.fitted().users

    def knows_item(self, item_id: str) -> bool:
        return item_id in self.model.fitted().items

    @staticmethod
    def _ids(model: Recommender, items: npt.NDArray[np.int64]) -> list[str]:
        return [str(item) for item in model.fitted().items.to_external(items).tolist()]

    def _answer(self, model: Recommender, answer: QueryRanking, *, history: bool = False) -> Ranked:
        """A query's answer as the API returns it: ``fallback`` names a shared route."""
        source = answer.source
        fallback = None if source not in ROUTES else source
        if history and source == "basket":
            fallback = "history"
        return Ranked(
            self._ids(model, answer.items),
            answer.scores.astype(float).tolist(),
            self.version,
            fallback,
            answer.note,
        )

    # -- requests --------------------------------------------------------------------------
    def recommend_user(
        self, user_id: str, k: int, constraint: Constraint | None, exclude: Sequence[str]
    ) -> Ranked:
        model = self.model
        allowed = model.item_mask(constraint, None, exclude) if constraint or exclude else None
        user = model.fitted().users.find(user_id)
        if user != UNKNOWN:
            best, scores = model.rank([user], k, allowed=allowed)
            valid = best[0] >= 0
            return Ranked(
                self._ids(model, best[0][valid]),
                scores[0][valid].astype(float).tolist(),
                self.version,
            )
        history = self.pending.get(user_id)
        answer = model.rank_query(Query(basket=history or ()), k, allowed=allowed)
        return self._answer(model, answer, history=bool(history))

    def recommend_anonymous(
        self,
        k: int,
        *,
        query: str | None,
        preferences: Mapping[str, Any] | None,
        basket: Sequence[str],
        constraint: Constraint | None,
        exclude: Sequence[str],
    ) -> Ranked:
        model = self.model
        allowed = model.item_mask(constraint, None, exclude) if constraint or exclude else None
        wanted = Query(text=query, preferences=preferences or None, basket=basket)
        return self._answer(model, model.rank_query(wanted, k, allowed=allowed))

    def similar(
        self, item_id: str, k: int, constraint: Constraint | None, exclude: Sequence[str]
    ) -> Ranked:
        model = self.model
        items = model.fitted().items
        if item_id not in items:
            raise UnknownIdError("item", [item_id])
        allowed = model.item_mask(constraint, None, exclude) if constraint or exclude else None
        if not model.abilities.similar_items:
            answer = model.rank_query(Query(basket=[item_id]), k, allowed=allowed)
            ranked = self._answer(model, answer)
            return Ranked(ranked.item_ids, ranked.scores, self.version, "co-occurrence")
        best, scores = model.rank_similar([items.index_of(item_id)], k, allowed=allowed)
        valid = best[0] >= 0
        return Ranked(
            self._ids(model, best[0][valid]),
            scores[0][valid].astype(float).tolist(),
            self.version,
        )

    # -- fresh events ----------------------------------------------------------------------
    def sync(self, engine: Engine) -> int:
        """Fold the stored events this model has not seen into it; returns how many."""
        with self._sync_lock:
            rows = self.tail.fetch(engine)
            applied = self._apply(rows) if rows else 0
            self.tail.mark([row.id for row in rows])
            return applied

    def apply(self, rows: Sequence[StoredEvent]) -> int:
        """Fold ``rows`` in (a copy of the model takes them, then replaces it)."""
        with self._sync_lock:
            return self._apply(rows)

    def _apply(self, rows: Sequence[StoredEvent]) -> int:
        weights = self.weights
        default = weights.default if weights.default is not None else 0.0
        users: list[str] = []
        items: list[str] = []
        values: list[float] = []
        clipped: list[int] = []
        for row in rows:
            value = row.value * float(weights.weights.get(row.event_type, default))
            if not value <= MAX_VALUE:  # stored before values were bounded, or weighted up
                value = MAX_VALUE
                clipped.append(row.id)
            if value > 0:
                users.append(row.user_id)
                items.append(row.item_id)
                values.append(value)
        if clipped:
            logger.warning(
                "model version %s: %d weighted event value(s) above %g clipped to it "
                "(event rows %s)",
                self.version,
                len(clipped),
                MAX_VALUE,
                ", ".join(map(str, clipped[:5])) + (", ..." if len(clipped) > 5 else ""),
            )
        if not users:
            return 0
        fresh = self.model.copy()
        applied = fresh.add_interactions(users, items, values)
        known = fresh.fitted().users
        for user_id, item_id in zip(users, items, strict=True):
            if user_id not in known:
                history = self.pending.pop(user_id, [])
                history.append(item_id)
                self.pending[user_id] = history[-MAX_PENDING_ITEMS:]
        while len(self.pending) > MAX_PENDING_USERS:
            self.pending.popitem(last=False)
        self.model = fresh
        return applied


def probe(model: Recommender) -> None:
    """Answer one request of each kind every version serves (ranking for a known user, and
    a query without anything, which is popularity for most models): a version whose files
    load but whose state does not fit together fails here, not on every request."""
    if len(model.fitted().users):
        model.rank([0], 1)
    model.rank_query(Query(), 1)


class ModelPool:
    """The versions this worker serves: the active one, an optional A/B arm, and a few more
    (versions a caller asked for by name, and the last ones replaced, so that a rollback is
    instant); the least recently used of those are dropped."""

    def __init__(
        self,
        registry: ModelRegistry,
        weights: EventWeights,
        *,
        on_swap: Callable[[str, str | None], None] | None = None,
        keep_extra: int = 2,
    ) -> None:
        self.registry = registry
        self.weights = weights
        self.on_swap = on_swap
        self.keep_extra = keep_extra
        self.active: ServedModel | None = None
        self.split: tuple[Split, ServedModel] | None = None
        self._extra: OrderedDict[str, ServedModel] = OrderedDict()
        self._pointer_text: str | None = None
        self._load_lock = threading.Lock()
        #: Versions that failed to load or to answer (their traceback is logged once).
        self._unservable: set[str] = set()

    def serving(self) -> list[ServedModel]:
        """The versions that answer requests without being named: active and A/B arm."""
        active, split = self.active, self.split
        found = [] if active is None else [active]
        if split is not None and split[1] is not active:
            found.append(split[1])
        return found

    def loaded(self) -> list[ServedModel]:
        found: dict[str, ServedModel] = {}
        if self.active is not None:
            found[self.active.version] = self.active
        if self.split is not None:
            found[self.split[1].version] = self.split[1]
        for served in list(self._extra.values()):
            found.setdefault(served.version, served)
        return list(found.values())

    def _find(self, version: str) -> ServedModel | None:
        for served in self.loaded():
            if served.version == version:
                return served
        return None

    def _load(self, version: str, engine: Engine | None) -> ServedModel:
        found = self._find(version)
        if found is not None:
            return found
        try:
            info = self.registry.info(version)
            served = ServedModel(info, self.registry.load(version), self.weights)
            probe(served.model)
        except Exception as error:
            if version not in self._unservable:  # the pointer may name it on every sync
                logger.exception("model version %s cannot be served", version)
                self._unservable.add(version)
            raise ModelError(
                f"model version {version!r} cannot be served: {public_message(error)}"
            ) from None
        self._unservable.discard(version)
        if engine is not None:
            served.sync(engine)  # catch up with events stored since it was trained
        logger.info("loaded model version %s (%s)", version, info.algorithm)
        return served

    def refresh(self, engine: Engine | None = None, *, force: bool = False) -> bool:
        """Follow ``active.json``: load what it names, then swap references. Returns whether
        anything changed."""
        with self._load_lock:
            text = self.registry.pointer_text()
            if text == self._pointer_text and not force:
                return False
            pointer = self.registry.pointer()
            active = self._load(pointer.active, engine) if pointer.active else None
            split = None
            if pointer.split is not None and self.registry.exists(pointer.split.version):
                split = (pointer.split, self._load(pointer.split.version, engine))
            replaced = self.active
            self.active = active
            self.split = split
            self._pointer_text = text
            if replaced is not None and replaced is not active:
                self._remember(replaced)  # a swap back (rollback) needs no reload
            previous = replaced.version if replaced is not None else None
            if active is not None and active.version != previous and self.on_swap is not None:
                self.on_swap(active.version, previous)
            return True

    def _remember(self, served: ServedModel) -> None:
        self._extra[served.version] = served
        self._extra.move_to_end(served.version)
        while len(self._extra) > self.keep_extra:
            self._extra.popitem(last=False)

    def get(self, version: str) -> ServedModel | None:
        """A loaded version (``None`` if it must be loaded first with :meth:`load`)."""
        return self._find(version)

    def load(self, version: str, engine: Engine | None = None) -> ServedModel:
        """Load a version by name for callers that ask for it explicitly, and before it is
        activated: a version that cannot answer (see :func:`probe`) raises
        :class:`~rekko.errors.ModelError` naming the version, before anything points at it."""
        with self._load_lock:
            served = self._load(version, engine)
            if self._find(version) is None or version in self._extra:
                self._remember(served)
            return served

    def choose(self, user_id: str | None) -> ServedModel | None:
        """The version that serves ``user_id``: the A/B arm for its share of users, else the
        active one."""
        active, split = self.active, self.split
        if split is not None and user_id is not None:
            arm, served = split
            if bucket(user_id, arm.version) < arm.share:
                return served
        return active


class Catalogue:
    """Item features and hidden/deleted items, kept in memory and refreshed incrementally.

    Each refresh reads the items changed after the newest change it has seen, and also those
    stamped in the last ``settle_us`` (so that a write committed a little after its stamp is
    still picked up); rows already applied with the same stamp are skipped.
    """

    def __init__(self, settle_us: int = 10_000_000) -> None:
        self.features: dict[str, dict[str, Any]] = {}
        self.blocked: frozenset[str] = frozenset()
        self.settle_us = settle_us
        self._stamps: dict[str, int] = {}
        self._newest = 0
        self._lock = threading.Lock()

    def refresh(self, engine: Engine) -> int:
        """Read items changed since the last refresh; returns how many changed."""
        with self._lock:
            since = min(self._newest + 1, now_us() - self.settle_us) if self._newest else 0
            changed = [
                record
                for record in items_changed_since(engine, since)
                if self._stamps.get(record.item_id) != record.updated_at
            ]
            if changed:
                self._apply(changed)
            return len(changed)

    def _apply(self, changed: Sequence[ItemRecord]) -> None:
        blocked = set(self.blocked)
        for record in changed:
            self._stamps[record.item_id] = record.updated_at
            if record.status == "deleted":
                self.features.pop(record.item_id, None)
            else:
                self.features[record.item_id] = record.features
            if record.status == "active":
                blocked.discard(record.item_id)
            else:
                blocked.add(record.item_id)
            self._newest = max(self._newest, record.updated_at)
        self.blocked = frozenset(blocked)

    def fields(self, item_id: str, names: Sequence[str]) -> dict[str, Any]:
        features = self.features.get(item_id, {})
        return {name: features.get(name) for name in names}
