"""The models a worker serves, and how each kind of request is answered.

A :class:`ServedModel` wraps one loaded model version with a lock, its position in the events
table (:class:`~rekko.store.tail.EventTail`) and the fallbacks. The :class:`ModelPool` holds
the active version (and the second version of an A/B split) *by reference*: activating a
version loads it completely first and then replaces the reference, so a request that already
picked a model finishes with it and no request ever sees a half-loaded model.

Fallbacks, in the order they are tried (the response names the one used in ``fallback``):

* known user: the model's own ranking (``fallback: null``);
* user the model does not know but who has events since it was trained (``history``): items
  like those, from the model's ``similar_items`` when it has that ability, else from
  co-occurrence in the training data;
* anyone else (``popularity``): the most popular items of the model's training data;
* anonymous requests: a query-capable model (``recommend_for_query``, e.g. ``content``) reads
  free text and stated preferences; otherwise a basket goes to ``basket`` (as ``history``),
  stated preferences become hard constraints over popular items (``preferences``) and free
  text is matched word by word against item features (``keywords``).

Filters, excluded items and hidden/deleted items apply to every fallback as to the model.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
from sqlalchemy import Engine

from rekko.constraints import AllOf, Constraint, parse_constraints
from rekko.data.dataset import EventWeights
from rekko.errors import DataError, ModelError, UnknownIdError
from rekko.index.topk import top_k
from rekko.models.base import Recommender
from rekko.store.registry import ModelRegistry, Split, VersionInfo
from rekko.store.repository import ItemRecord, StoredEvent, items_changed_since, now_us
from rekko.store.tail import EventTail

logger = logging.getLogger(__name__)

#: Users remembered per model when the model cannot fold them in (their latest items).
MAX_PENDING_USERS = 100_000
MAX_PENDING_ITEMS = 200
_WORD = re.compile(r"\w+", re.UNICODE)


class PreferenceError(DataError):
    """Stated preferences that name unknown features or give values they cannot take."""


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


def _as_str(values: Iterable[Any]) -> list[str]:
    return [str(v) for v in values]


class ServedModel:
    """One loaded model version, safe to use from several threads."""

    def __init__(
        self,
        info: VersionInfo,
        model: Recommender,
        weights: EventWeights,
        *,
        settle_s: float = 10.0,
    ) -> None:
        if model.users_ is None or model.items_ is None or model.seen_ is None:
            raise ModelError(f"model version {info.version!r} is not trained")
        self.info = info
        self.version = info.version
        self.model = model
        self.weights = weights
        self.lock = threading.RLock()
        self._sync_lock = threading.Lock()
        self.tail = EventTail(info.events_watermark, settle_s=settle_s)
        self.pending: OrderedDict[str, list[str]] = OrderedDict()
        self._cooccurrence: tuple[int, sp.csc_matrix, sp.csr_matrix] | None = None
        self._texts: list[set[str]] | None = None
        self._popular_order, self._popular_counts = self._popularity()
        self._plain_ranking = _ranks_like_base(model)

    # -- helpers ---------------------------------------------------------------------------
    @property
    def n_items(self) -> int:
        assert self.model.items_ is not None
        return len(self.model.items_)

    def _popularity(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        assert self.model.seen_ is not None and self.model.items_ is not None
        counts = np.diff(sp.csc_matrix(self.model.seen_).indptr).astype(np.float32)
        popular_items = getattr(self.model, "popular_items", None)
        if callable(popular_items):
            order = self.model.items_.to_index(popular_items(len(self.model.items_)))
        else:
            order = np.argsort(-counts, kind="stable").astype(np.int64)
        return np.asarray(order, dtype=np.int64), counts

    def knows_user(self, user_id: str) -> bool:
        users = self.model.users_
        return users is not None and user_id in users

    def knows_item(self, item_id: str) -> bool:
        items = self.model.items_
        return items is not None and item_id in items

    def _allowed(
        self, constraint: Constraint | None, exclude: Iterable[str]
    ) -> npt.NDArray[np.bool_]:
        items = self.model.items_
        assert items is not None
        allowed = np.ones(len(items), dtype=bool)
        if constraint is not None:
            features = self.model.item_features_
            if features is None:
                raise ModelError(
                    f"model '{self.model.name}' was trained without item features, so it "
                    "cannot apply attribute filters"
                )
            allowed &= constraint.mask(features)
        marked = items.to_index(list(exclude), unknown="mark")
        allowed[marked[marked >= 0]] = False
        return allowed

    def _ranked(
        self,
        scores: npt.NDArray[np.float32],
        allowed: npt.NDArray[np.bool_],
        k: int,
        fallback: str | None,
        note: str | None = None,
    ) -> Ranked:
        items = self.model.items_
        assert items is not None
        masked = np.where(allowed, scores, -np.inf).astype(np.float32)[None, :]
        best, best_scores = top_k(masked, k)
        valid = best[0] >= 0
        return Ranked(
            _as_str(items.to_external(best[0][valid])),
            [float(s) for s in best_scores[0][valid]],
            self.version,
            fallback,
            note,
        )

    def _popular_scores(self) -> npt.NDArray[np.float32]:
        """Scores that rank items in the model's popularity order."""
        scores = np.empty(self.n_items, dtype=np.float32)
        scores[self._popular_order] = np.arange(len(self._popular_order), 0, -1)
        return scores

    def popular(
        self,
        k: int,
        constraint: Constraint | None,
        exclude: Iterable[str],
        *,
        fallback: str = "popularity",
        note: str | None = None,
    ) -> Ranked:
        """The most popular allowed items (score: number of users in the training data)."""
        allowed = self._allowed(constraint, exclude)
        ranking = self._ranked(self._popular_scores(), allowed, k, fallback, note)
        items = self.model.items_
        assert items is not None
        counts = self._popular_counts[items.to_index(ranking.item_ids)].tolist()
        return Ranked(ranking.item_ids, [float(c) for c in counts], self.version, fallback, note)

    def _cooccurrence_matrices(self) -> tuple[sp.csc_matrix, sp.csr_matrix]:
        seen = self.model.seen_
        assert seen is not None
        if self._cooccurrence is None or self._cooccurrence[0] != id(seen):
            binary = sp.csr_matrix(seen, dtype=np.float32, copy=True)
            binary.data[:] = 1.0
            self._cooccurrence = (id(seen), binary.tocsc(), binary.T.tocsr())
        return self._cooccurrence[1], self._cooccurrence[2]

    def like_these(
        self,
        basket: Sequence[str],
        k: int,
        constraint: Constraint | None,
        exclude: Iterable[str],
        *,
        fallback: str | None,
    ) -> Ranked:
        """Items like the ``basket``: summed ``similar_items`` scores when the model has them,
        else co-occurrence (users who took a basket item also took...), popularity breaking
        ties. Basket items themselves are left out."""
        items = self.model.items_
        assert items is not None
        index = items.to_index(list(basket), unknown="mark")
        known = np.unique(index[index >= 0])
        allowed = self._allowed(constraint, [*exclude, *basket])
        if len(known) == 0:
            return self.popular(
                k,
                constraint,
                [*exclude, *basket],
                fallback="popularity",
                note="none of the given items is known to the model",
            )
        tie_break = self._popular_scores() / (2.0 * self.n_items)
        if self.model.abilities.similar_items:
            known_ids = _as_str(items.to_external(known))
            similar = self.model.similar_items(
                known_ids, k=min(self.n_items, k + len(known) + int((~allowed).sum()))
            )
            scores = np.zeros(self.n_items, dtype=np.float32)
            if len(similar):
                positions = items.to_index(similar["similar_item_id"])
                np.add.at(scores, positions, similar["score"].to_numpy(dtype=np.float32))
            hit = np.zeros(self.n_items, dtype=bool)
            if len(similar):
                hit[items.to_index(similar["similar_item_id"])] = True
            # Items outside every neighbour list rank after all neighbours, by popularity.
            floor = float(scores[hit].min()) - 1.0 if hit.any() else 0.0
            scores = np.where(hit, scores, floor + tie_break).astype(np.float32)
            return self._ranked(scores, allowed, k, fallback)
        by_item, by_user = self._cooccurrence_matrices()
        users = np.asarray(by_item[:, known].sum(axis=1)).ravel().astype(np.float32)
        scores = np.asarray(by_user @ users).ravel().astype(np.float32) + tie_break
        return self._ranked(scores.astype(np.float32), allowed, k, fallback)

    def _known_user_fast(
        self, user_id: str, k: int, constraint: Constraint | None, exclude: Sequence[str]
    ) -> Ranked:
        """``recommend`` for one user without building a data frame (the hot path).

        Only for models that rank exactly as the base class does (no override of
        ``recommend`` or ``_top_k``): it calls the base class's own top-K step with the same
        item mask ``recommend`` would build, so items and scores are the same.
        """
        model = self.model
        users, items = model.users_, model.items_
        assert users is not None and items is not None
        allowed = self._allowed(constraint, exclude) if constraint or exclude else None
        best, scores = model._top_k(np.asarray([users.index_of(user_id)]), k, allowed, True)
        valid = best[0] >= 0
        return Ranked(
            _as_str(items.to_external(best[0][valid])),
            scores[0][valid].astype(float).tolist(),
            self.version,
        )

    # -- requests --------------------------------------------------------------------------
    def recommend_user(
        self, user_id: str, k: int, constraint: Constraint | None, exclude: Sequence[str]
    ) -> Ranked:
        with self.lock:
            if self.knows_user(user_id):
                if self._plain_ranking:
                    return self._known_user_fast(user_id, k, constraint, exclude)
                frame = self.model.recommend(
                    [user_id], k, filters=constraint, exclude=exclude or None, unknown="skip"
                )
                return Ranked(
                    _as_str(frame["item_id"]),
                    frame["score"].astype(float).tolist(),
                    self.version,
                )
            history = self.pending.get(user_id)
            if history:
                return self.like_these(history, k, constraint, exclude, fallback="history")
            return self.popular(k, constraint, exclude)

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
        with self.lock:
            note = None
            query_model = getattr(self.model, "recommend_for_query", None)
            if (query or preferences) and callable(query_model):
                wanted: str | dict[str, Any]
                if preferences:
                    wanted = dict(preferences)
                    if query:
                        wanted["text"] = query
                else:
                    wanted = query or ""
                try:
                    frame: pd.DataFrame = query_model(
                        wanted, k=k, filters=constraint, exclude=[*exclude, *basket]
                    )
                    return Ranked(
                        _as_str(frame["item_id"]),
                        frame["score"].astype(float).tolist(),
                        self.version,
                    )
                except DataError as error:
                    note = f"the query matched nothing the model knows ({error})"
            if basket:
                return self.like_these(basket, k, constraint, exclude, fallback="basket")
            if preferences:
                try:
                    stated = parse_constraints(preferences)
                    self._allowed(stated, ())  # features the catalogue has, values they take
                except (DataError, ModelError) as error:
                    raise PreferenceError(str(error)) from None
                combined = stated if constraint is None else AllOf((constraint, stated))
                return self.popular(k, combined, exclude, fallback="preferences", note=note)
            if query:
                return self.keywords(query, k, constraint, exclude)
            return self.popular(k, constraint, exclude, note=note)

    def keywords(
        self, query: str, k: int, constraint: Constraint | None, exclude: Sequence[str]
    ) -> Ranked:
        """Items whose text and label features share the most words with ``query``."""
        texts = self._item_words()
        if texts is None:
            return self.popular(
                k, constraint, exclude, note="this model has no item features to match text"
            )
        words = {w.casefold() for w in _WORD.findall(query)}
        matches = np.fromiter((len(words & t) for t in texts), dtype=np.float32, count=len(texts))
        allowed = self._allowed(constraint, exclude) & (matches > 0)
        scores = matches + self._popular_scores() / (2.0 * self.n_items)
        if not allowed.any():
            return self.popular(k, constraint, exclude, note="no item matches a word of the query")
        return self._ranked(scores.astype(np.float32), allowed, k, "keywords")

    def _item_words(self) -> list[set[str]] | None:
        features = self.model.item_features_
        if features is None:
            return None
        if self._texts is None:
            columns = features.columns_of("text", "categorical", "multi")
            texts: list[set[str]] = [set() for _ in range(len(features.frame))]
            for name in columns:
                for position, value in enumerate(features.frame[name]):
                    parts = value if isinstance(value, tuple) else (value,)
                    for part in parts:
                        if part is not None:
                            texts[position].update(w.casefold() for w in _WORD.findall(str(part)))
            self._texts = texts
        return self._texts

    def similar(
        self, item_id: str, k: int, constraint: Constraint | None, exclude: Sequence[str]
    ) -> Ranked:
        with self.lock:
            if not self.knows_item(item_id):
                raise UnknownIdError("item", [item_id])
            if self.model.abilities.similar_items:
                return self.like_these([item_id], k, constraint, exclude, fallback=None)
            return self.like_these([item_id], k, constraint, exclude, fallback="co-occurrence")

    # -- fresh events ----------------------------------------------------------------------
    def sync(self, engine: Engine) -> int:
        """Fold the stored events this model has not seen into it; returns how many."""
        with self._sync_lock:
            rows = self.tail.fetch(engine)
            applied = self.apply(rows) if rows else 0
            self.tail.mark([row.id for row in rows])
            return applied

    def apply(self, rows: Sequence[StoredEvent]) -> int:
        weights = self.weights
        default = weights.default if weights.default is not None else 0.0
        users: list[str] = []
        items: list[str] = []
        values: list[float] = []
        for row in rows:
            value = row.value * float(weights.weights.get(row.event_type, default))
            if value > 0:
                users.append(row.user_id)
                items.append(row.item_id)
                values.append(value)
        if not users:
            return 0
        with self.lock:
            applied = self.model.add_interactions(users, items, values)
            for user_id, item_id in zip(users, items, strict=True):
                if not self.knows_user(user_id):
                    history = self.pending.pop(user_id, [])
                    history.append(item_id)
                    self.pending[user_id] = history[-MAX_PENDING_ITEMS:]
            while len(self.pending) > MAX_PENDING_USERS:
                self.pending.popitem(last=False)
        return applied


def _ranks_like_base(model: Recommender) -> bool:
    """The model ranks users' items with the base class's own machinery (no overrides)."""
    return all(
        getattr(type(model), name) is getattr(Recommender, name)
        for name in ("recommend", "_top_k", "_item_mask")
    )


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
        info = self.registry.info(version)
        served = ServedModel(info, self.registry.load(version), self.weights)
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
        """Load a version by name for callers that ask for it explicitly."""
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
