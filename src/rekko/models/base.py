"""The one interface every recommender implements.

Public methods validate input and map external ids to indices, then call private template
methods that work on integer indices only (``_fit``, ``_score``...). Filtering, exclusion of
seen items and top-K live here, once, for all models.

Model folders hold ``model.json`` (format version, model name, parameters, metadata),
``ids.json`` (the id maps), ``seen.npz`` (the training interactions, so that ``recommend``
after ``load`` still excludes them), ``state.npz`` (the model's own arrays) and, when the model
was trained with item features, ``item_features.parquet``. Nothing is pickled: loading a model
folder cannot run code.
"""

from __future__ import annotations

import copy
import json
import logging
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple, Self

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, ValidationError

from rekko.boosts import Boost, boost_scores
from rekko.constraints import Constraint
from rekko.data.dataset import Dataset, FeatureTable
from rekko.data.idmap import IdMap
from rekko.errors import DataError, ModelError, NotFittedError
from rekko.index.ann import IndexCache, IndexMode, TopK, wants_ann
from rekko.index.topk import top_k
from rekko.models.contract import Embeddings, ExportContract, ScoreKind
from rekko.models.query import PreferenceError, Query, QueryRanking, QueryScores

logger = logging.getLogger(__name__)

#: Reasons ``explain`` gives at most.
REASONS = 2
#: Abilities as error messages name them.
_ABILITY_WORDS = {
    "explicit": "predicting ratings (explicit feedback: train biased-mf, knn-baseline...)",
    "cold_users": "users it was not trained on",
    "fold_in": "folding in new events",
    "similar_items": "similar items",
    "queries": "queries (free text, stated preferences, a basket or user features)",
    "boosts": "soft boosts",
}

FORMAT = "rekko-model"
FORMAT_VERSION = 1
#: Users scored per batch in ``recommend`` (bounds memory to batch x n_items floats).
BATCH_USERS = 512

Unknown = Literal["raise", "skip"]


class Params(BaseModel):
    """Hyperparameters of a model. Subclasses add typed fields; unknown names are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Abilities:
    """What a model can do beyond ranking known users' items.

    Attributes:
        explicit: predicts ratings (``predict``, RMSE).
        cold_users: recommends for users it was not trained on (from features or a query).
        uses_features: reads item or user feature tables.
        fold_in: takes a user's new events into account without retraining.
        similar_items: answers ``similar_items``.
        queries: reads a :class:`~rekko.models.query.Query` with its own scoring (every model
            answers queries through the shared routes of :mod:`rekko.models.cold`).
        boosts: takes soft boosts (:mod:`rekko.boosts`) in ``rank`` and ``recommend``.
    """

    explicit: bool = False
    cold_users: bool = False
    uses_features: bool = False
    fold_in: bool = False
    similar_items: bool = False
    queries: bool = False
    boosts: bool = False

    @property
    def explains(self) -> bool:
        """Gives reasons with ``explain``: every model with item similarities ("because you
        liked X"); content models add shared attributes and words."""
        return self.similar_items


class Fitted(NamedTuple):
    """A fitted model's id maps and interaction matrix (training events plus folded-in ones)."""

    users: IdMap
    items: IdMap
    seen: sp.csr_matrix


class Ranking(NamedTuple):
    """Top-K item indices (``-1`` padded) and scores per user, best first: (users, k)."""

    items: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float32]


class Recommender(ABC):
    """Base class of all models. ``__init__`` only stores validated hyperparameters.

    What a new model implements is described in ``docs/models.md``: ``_fit`` and ``_score``,
    and optionally ``_similar``, ``_refresh_users``, ``_state`` / ``_set_state``,
    ``_factors``, ``_ranking_scores`` (models that re-rank or blend), ``_query_scores``
    (models that read queries) and ``export_contract``.
    """

    #: Registry name, used by the CLI, config files and model folders.
    name: ClassVar[str]
    abilities: ClassVar[Abilities] = Abilities()
    Params: ClassVar[type[Params]] = Params
    #: How factor models (see :meth:`_factors`) search the catalogue in ``recommend``:
    #: ``"exact"`` scores every item, ``"ann"`` searches an HNSW index
    #: (:mod:`rekko.index.ann`), ``"auto"`` uses the index from 50,000 items when faiss is
    #: installed. Set it on a model (``model.index_mode = "ann"``); it is not saved.
    index_mode: IndexMode = "auto"

    def __init__(self, **params: Any) -> None:
        try:
            self.params = self.Params(**params)
        except ValidationError as error:
            raise ModelError(f"{self.name}: {_pydantic_message(error)}") from None
        self.users_: IdMap | None = None
        self.items_: IdMap | None = None
        self.seen_: sp.csr_matrix | None = None
        self.item_features_: FeatureTable | None = None
        self.metadata_: dict[str, Any] = {}
        self._ann_index = IndexCache()
        # Values derived from the fitted state (popularity...), keyed by name; each entry
        # remembers the matrix it was computed from.
        self._derived: dict[str, tuple[object, Any]] = {}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())
        return f"{type(self).__name__}({params})"

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, dataset: Dataset) -> Self:
        """Train on ``dataset`` and return ``self``."""
        if len(dataset) == 0:
            raise DataError(f"{self.name}: cannot fit on a data set without interactions")
        self.users_ = dataset.users
        self.items_ = dataset.items
        self.seen_ = dataset.matrix.copy()
        self.item_features_ = dataset.item_features
        self._ann_index.clear()
        self._derived = {}
        self.metadata_ = {}  # _fit may record what it chose (auto's search) here
        self._fit(dataset)
        self.metadata_ = {
            **self.metadata_,
            "data_fingerprint": dataset.fingerprint(),
            "data_name": dataset.name,
            "explicit_data": dataset.explicit,
            "n_users": dataset.n_users,
            "n_items": dataset.n_items,
            "n_interactions": len(dataset),
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        return self

    @abstractmethod
    def _fit(self, dataset: Dataset) -> None:
        """Learn from ``dataset`` (indices only; ``self.seen_`` is its matrix)."""

    @abstractmethod
    def _score(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Scores of every item for each user index: shape (len(users), n_items)."""

    # -- fitted state helpers ---------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return self.seen_ is not None

    def fitted(self) -> Fitted:
        """The id maps and interactions of a fitted model (raises :class:`NotFittedError`)."""
        if self.users_ is None or self.items_ is None or self.seen_ is None:
            raise NotFittedError(f"{self.name}: the model is not trained yet (call fit or load)")
        return Fitted(self.users_, self.items_, self.seen_)

    def _fitted(self) -> Fitted:
        return self.fitted()

    def copy(self) -> Self:
        """A copy to fold events into while this one keeps serving (see :meth:`add_interactions`).

        Arrays are shared, not copied: ``add_interactions`` replaces the copy's matrices and
        id maps rather than changing them, so a reader of the original sees a consistent model.
        """
        clone = copy.copy(self)
        clone._derived = dict(self._derived)
        return clone

    def derived(
        self, name: str, compute: Callable[[], Any], depends_on: object | None = None
    ) -> Any:
        """A value computed once from ``depends_on`` (by default the current interactions),
        until that object is replaced (a fit, a load, new events)."""
        source = self.fitted().seen if depends_on is None else depends_on
        cached = self._derived.get(name)
        if cached is not None and cached[0] is source:
            return cached[1]
        value = compute()
        self._derived[name] = (source, value)
        return value

    def _require(self, ability: str) -> None:
        if not getattr(self.abilities, ability):
            what = _ABILITY_WORDS.get(ability, ability.replace("_", " "))
            raise ModelError(f"model '{self.name}' does not support {what}")

    def item_mask(
        self,
        filters: Constraint | None = None,
        candidates: Iterable[object] | None = None,
        exclude: Iterable[object] | None = None,
    ) -> npt.NDArray[np.bool_] | None:
        """The items that may be recommended (a boolean array over item indices), or ``None``
        when every item may.

        ``filters`` is a constraint over item attributes, ``candidates`` the only items to rank
        and ``exclude`` items never to return (external ids; unknown ones are ignored).
        """
        _, items, _ = self._fitted()
        allowed: npt.NDArray[np.bool_] | None = None
        if candidates is not None:
            marked = items.to_index(candidates, unknown="mark")
            allowed = np.zeros(len(items), dtype=bool)
            allowed[marked[marked >= 0]] = True
        if filters is not None:
            if self.item_features_ is None:
                raise ModelError(
                    f"model '{self.name}' was trained without item features, so it cannot "
                    "apply attribute filters"
                )
            mask = filters.mask(self.item_features_)
            allowed = mask if allowed is None else allowed & mask
        if exclude is not None:
            marked = items.to_index(exclude, unknown="mark")
            allowed = np.ones(len(items), dtype=bool) if allowed is None else allowed.copy()
            allowed[marked[marked >= 0]] = False
        return allowed

    # -- recommending -----------------------------------------------------------------------
    def recommend(
        self,
        users: Sequence[object],
        k: int = 10,
        *,
        exclude_seen: bool = True,
        filters: Constraint | None = None,
        candidates: Iterable[object] | None = None,
        exclude: Iterable[object] | None = None,
        unknown: Unknown = "raise",
        boosts: Sequence[Boost] = (),
    ) -> pd.DataFrame:
        """Top-``k`` items for each user, as a frame ``user_id, item_id, rank, score``.

        Args:
            users: external user ids.
            exclude_seen: leave out the items each user interacted with in training (and
                since, for models that fold in new events).
            filters: a constraint over item attributes (see :mod:`rekko.constraints`), applied
                before the top K is taken.
            candidates: rank only these items (external ids; unknown ones are ignored).
            exclude: never return these items.
            unknown: users the model does not know raise :class:`~rekko.errors.UnknownIdError`
                (``"raise"``, the default) or are left out of the result (``"skip"``).
            boosts: soft preferences added to the scores (models with ``abilities.boosts``).

        Rank 1 is best. A user gets fewer than ``k`` rows only when fewer items qualify. This
        maps ids and builds the frame around :meth:`rank`, which does the ranking.
        """
        user_map, item_map, _ = self._fitted()
        index = user_map.to_index(
            list(users), unknown="mark" if unknown == "skip" else "raise", what="user"
        )
        index = index[index >= 0]
        allowed = self.item_mask(filters, candidates, exclude)
        best, scores = self.rank(
            index, k, allowed=allowed, exclude_seen=exclude_seen, boosts=boosts
        )
        valid = best >= 0
        n_per_user = valid.sum(axis=1)
        return pd.DataFrame(
            {
                "user_id": pd.Series(
                    user_map.to_external(np.repeat(index, n_per_user)), dtype=object
                ),
                "item_id": pd.Series(item_map.to_external(best[valid]), dtype=object),
                "rank": _ranks(n_per_user),
                "score": scores[valid].astype(np.float32),
            }
        )

    def rank(
        self,
        users: npt.ArrayLike,
        k: int,
        *,
        allowed: npt.NDArray[np.bool_] | None = None,
        exclude_seen: bool = True,
        boosts: Sequence[Boost] = (),
    ) -> Ranking:
        """The one ranking call: the best ``k`` item indices and scores for user indices.

        Every path that recommends ends here: :meth:`recommend`, the HTTP service, batch
        recommendation, evaluation and tuning. ``allowed`` (a boolean array over items, see
        :meth:`item_mask`) limits the items that may be returned; ``exclude_seen`` leaves out
        each user's interactions. The arrays have ``k`` columns, best first, ``-1`` (score
        ``-inf``) where fewer than ``k`` items qualify. Equal scores are ordered by item
        index, in every implementation.
        """
        user_map, item_map, _ = self._fitted()
        if k < 1:
            raise ModelError(f"k must be at least 1, got {k}")
        index = np.asarray(users, dtype=np.int64).reshape(-1)
        if len(index) and (index.min() < 0 or index.max() >= len(user_map)):
            raise ModelError(f"{self.name}: user indices must lie in [0, {len(user_map)})")
        if allowed is not None and allowed.shape != (len(item_map),):
            raise ModelError(f"{self.name}: allowed must be a boolean array of {len(item_map)}")
        boost = None
        if boosts:
            self._require("boosts")
            boost = boost_scores(boosts, self.item_features_, len(item_map))
        width = min(k, len(item_map))
        if 0 < len(index) <= BATCH_USERS and width == k:
            return Ranking(*self._rank_batch(index, k, allowed, exclude_seen, boost))
        out = np.full((len(index), k), -1, dtype=np.int64)
        out_scores = np.full((len(index), k), -np.inf, dtype=np.float32)
        for start in range(0, len(index), BATCH_USERS):
            batch = index[start : start + BATCH_USERS]
            best, scores = self._rank_batch(batch, width, allowed, exclude_seen, boost)
            out[start : start + len(batch), : best.shape[1]] = best
            out_scores[start : start + len(batch), : best.shape[1]] = scores
        return Ranking(out, out_scores)

    def _rank_batch(
        self,
        users: npt.NDArray[np.int64],
        k: int,
        allowed: npt.NDArray[np.bool_] | None,
        exclude_seen: bool,
        boost: npt.NDArray[np.float64] | None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Best ``k`` item indices (-1 padded) and scores for a batch of user indices.

        Factor models go through the approximate index when :attr:`index_mode` says so;
        exclusions and filters stay exact (see :mod:`rekko.index.ann`).
        """
        _, _, seen = self._fitted()
        factors = None if self.index_mode == "exact" or boost is not None else self._factors()
        if factors is not None and wants_ann(self.index_mode, len(factors[1])):
            user_vectors, item_vectors = factors

            def exact(rows: npt.NDArray[np.int64], depth: int) -> TopK:
                scores = self._ranking_scores(users[rows], allowed, exclude_seen, None)
                return top_k(scores, depth)

            return self._ann_index.get(item_vectors).top_k(
                user_vectors[users],
                k,
                allowed=allowed,
                seen=seen[users] if exclude_seen else None,
                exact=exact,
            )
        return top_k(self._ranking_scores(users, allowed, exclude_seen, boost), k)

    def _ranking_scores(
        self,
        users: npt.NDArray[np.int64],
        allowed: npt.NDArray[np.bool_] | None,
        exclude_seen: bool,
        boost: npt.NDArray[np.float64] | None,
    ) -> npt.NDArray[np.float32]:
        """The score step of :meth:`rank`: scores of every item for each user, ``-inf`` where
        an item may not be returned (not ``allowed``, or seen when ``exclude_seen``).

        Models that blend or re-rank (hybrid, fallback) override this step, never ``rank``.
        ``boost`` (summed soft boosts per item) only reaches models with ``abilities.boosts``.
        """
        _, _, seen = self._fitted()
        scores = np.array(self._score(users), dtype=np.float32, copy=True)
        if allowed is not None:
            scores[:, ~allowed] = -np.inf
        if exclude_seen:
            scores[seen_entries(seen, users)] = -np.inf
        return scores

    def _factors(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None:
        """``(user_vectors, item_vectors)`` when ``_score(users)`` equals
        ``user_vectors[users] @ item_vectors.T``, else ``None`` (the default).

        Factor models override this to enable the approximate index. The index is built on
        first use and rebuilt when ``item_vectors`` is a different array (a new fit or load);
        return the same array object while the item vectors do not change.
        """
        return None

    def factors(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None:
        """``(user_vectors, item_vectors)`` of a model whose scores are their dot products
        (ALS, BPR, spark-als, two-tower...), else ``None``. Batch top-K on Spark uses them."""
        self._fitted()
        return self._factors()

    def export_contract(self) -> ExportContract | None:
        """What the exporters (:mod:`rekko.export`) may read of this model, or ``None`` when it
        cannot be exported.

        The default serves factor models (see :meth:`factors`): their vectors, with the mean
        user vector for users the model does not know. Models with a network of their own
        (the Keras models) add it.
        """
        factors = self.factors()
        if factors is None:
            return None
        user_vectors, item_vectors = (np.asarray(array, dtype=np.float32) for array in factors)
        fallback = (
            user_vectors.mean(axis=0).astype(np.float32)
            if len(user_vectors)
            else np.zeros(item_vectors.shape[1], dtype=np.float32)
        )
        score: ScoreKind = "rating" if self.abilities.explicit else "score"
        return ExportContract(
            embeddings=Embeddings(user_vectors, item_vectors, fallback, score=score)
        )

    # -- people the model does not know ----------------------------------------------------
    def rank_query(
        self,
        query: Query | str | Mapping[str, Any] | None,
        k: int,
        *,
        allowed: npt.NDArray[np.bool_] | None = None,
        strict: bool = False,
        boosts: Sequence[Boost] = (),
    ) -> QueryRanking:
        """The best ``k`` items for someone without a history, from a :class:`Query`.

        A model with ``abilities.queries`` answers with its own scoring first; when it has
        none, or its step matched nothing (``note`` says so), the shared routes of
        :mod:`rekko.models.cold` answer: items like the basket, stated preferences as
        constraints, words of the text matched against item features, and popularity.
        ``source`` names the route. Basket items are never returned. With ``strict``, only
        the model's own step may answer: a query it cannot read raises
        :class:`~rekko.errors.DataError` (or :class:`~rekko.errors.ModelError` for a model
        without the ability). ``boosts`` apply to the model's own step (``abilities.boosts``).
        """
        from rekko.models import cold

        _, item_map, _ = self._fitted()
        if k < 1:
            raise ModelError(f"k must be at least 1, got {k}")
        wanted = Query.of(query)
        if allowed is not None and allowed.shape != (len(item_map),):
            raise ModelError(f"{self.name}: allowed must be a boolean array of {len(item_map)}")
        if strict:
            self._require("queries")
        boost = None
        if boosts:
            self._require("boosts")
            boost = boost_scores(boosts, self.item_features_, len(item_map))
        mask = np.ones(len(item_map), dtype=bool) if allowed is None else allowed.copy()
        basket = item_map.to_index(list(wanted.basket), unknown="mark")
        basket = np.unique(basket[basket >= 0])
        mask[basket] = False
        note = None
        if self.abilities.queries and (not wanted.is_empty or strict):
            try:
                own = self._query_scores(wanted, boost)
            except PreferenceError:
                raise
            except DataError as error:  # what the query states is what the model cannot read
                raise PreferenceError(str(error)) from None
            if own is not None:
                where = mask if own.allowed is None else mask & own.allowed
                best, scores = top_k(np.where(where, own.scores, -np.inf)[None, :], k)
                valid = best[0] >= 0
                return QueryRanking(best[0][valid], scores[0][valid], own.source)
            if strict:
                raise DataError(
                    f"{self.name}: the query matches no known words, attributes or items"
                )
            if wanted.text is not None or wanted.preferences or wanted.user_features:
                note = "the query matched nothing the model knows"
        return cold.answer(self, wanted, basket, mask, k, note)

    def recommend_query(
        self,
        query: Query | str | Mapping[str, Any] | None,
        k: int = 10,
        *,
        filters: Constraint | None = None,
        candidates: Iterable[object] | None = None,
        exclude: Iterable[object] | None = None,
        strict: bool = False,
        boosts: Sequence[Boost] = (),
    ) -> pd.DataFrame:
        """:meth:`rank_query` with ids: a frame ``item_id, rank, score``; ``attrs`` hold the
        ``source`` and ``note`` of the answer. Filters apply before the top K."""
        _, item_map, _ = self._fitted()
        answer = self.rank_query(
            query,
            k,
            allowed=self.item_mask(filters, candidates, exclude),
            strict=strict,
            boosts=boosts,
        )
        frame = pd.DataFrame(
            {
                "item_id": pd.Series(item_map.to_external(answer.items), dtype=object),
                "rank": np.arange(1, len(answer.items) + 1, dtype=np.int64),
                "score": answer.scores.astype(np.float32),
            }
        )
        frame.attrs["source"] = answer.source
        frame.attrs["note"] = answer.note
        return frame

    def _query_scores(
        self, query: Query, boost: npt.NDArray[np.float64] | None
    ) -> QueryScores | None:
        """This model's own scores for ``query`` (models with ``abilities.queries``), or
        ``None`` when it matched nothing the model knows. Bad queries (unknown features,
        values of the wrong kind) raise :class:`~rekko.errors.DataError`."""
        return None

    def popularity(self) -> npt.NDArray[np.float32]:
        """How popular each item is: the number of users who interacted with it (training
        events and events folded in since). The shared routes rank by it."""

        def count() -> npt.NDArray[np.float32]:
            _, items, seen = self._fitted()
            return np.bincount(seen.indices, minlength=len(items)).astype(np.float32)

        result: npt.NDArray[np.float32] = self.derived("popularity", count)
        return result

    def score(self, user: object, items: Sequence[object]) -> npt.NDArray[np.float32]:
        """This model's scores of ``items`` for ``user`` (higher is better)."""
        user_map, item_map, _ = self._fitted()
        user_index = user_map.index_of(user, what="user")
        item_index = item_map.to_index(items, what="item")
        return np.asarray(self._score(np.asarray([user_index]))[0, item_index], dtype=np.float32)

    def predict(self, users: Sequence[object], items: Sequence[object]) -> npt.NDArray[np.float32]:
        """Predicted ratings for (user, item) pairs, for models trained on explicit ratings.

        Unknown users or items get the model's documented fallback (its baseline estimate).
        """
        self._require("explicit")
        user_map, item_map, _ = self._fitted()
        if len(users) != len(items):
            raise ModelError("predict needs as many users as items")
        return self._predict(
            user_map.to_index(users, unknown="mark"), item_map.to_index(items, unknown="mark")
        )

    def predict_indices(
        self, users: npt.NDArray[np.int64], items: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        """:meth:`predict` on indices (``-1`` for an unknown user or item), for evaluation."""
        self._require("explicit")
        self._fitted()
        if len(users) != len(items):
            raise ModelError("predict needs as many users as items")
        return self._predict(np.asarray(users, np.int64), np.asarray(items, np.int64))

    def _predict(
        self, users: npt.NDArray[np.int64], items: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        raise ModelError(f"model '{self.name}' does not support {_ABILITY_WORDS['explicit']}")

    def explain(
        self,
        item: object,
        *,
        user: object | None = None,
        query: str | Mapping[str, Any] | None = None,
    ) -> list[str]:
        """Why ``item`` suits ``user``: the items of their history most like it, by this
        model's own item similarity ("because you liked i0042"); at most :data:`REASONS`,
        empty when nothing in the history is similar. Content models also explain queries.
        """
        if query is not None:
            raise ModelError(f"model '{self.name}' explains users, not queries (content does)")
        if user is None:
            raise ModelError("explain needs a user")
        self._require("similar_items")
        users, items, seen = self._fitted()
        item_index = items.index_of(item, what="item")
        history = seen[users.index_of(user, what="user")].indices
        history = history[history != item_index]
        if len(history) == 0:
            return []
        similarity = np.asarray(self._similar(np.asarray([item_index]))[0], dtype=np.float64)
        closest = history[np.argsort(-similarity[history], kind="stable")[:REASONS]]
        return [
            f"because you liked {liked}"
            for liked, index in zip(items.to_external(closest), closest, strict=True)
            if similarity[index] > 0
        ]

    def similar_items(
        self, items: Sequence[object], k: int = 10, *, filters: Constraint | None = None
    ) -> pd.DataFrame:
        """The ``k`` most similar items to each of ``items``: ``item_id, similar_item_id, rank,
        score``. An item is never similar to itself."""
        _, item_map, _ = self._fitted()
        index = item_map.to_index(items, what="item")
        best, best_scores = self.rank_similar(index, k, allowed=self.item_mask(filters))
        valid = best >= 0
        counts = valid.sum(axis=1)
        return pd.DataFrame(
            {
                "item_id": item_map.to_external(np.repeat(index, counts)),
                "similar_item_id": item_map.to_external(best[valid]),
                "rank": _ranks(counts),
                "score": best_scores[valid],
            }
        )

    def rank_similar(
        self,
        items: npt.ArrayLike,
        k: int,
        *,
        allowed: npt.NDArray[np.bool_] | None = None,
    ) -> Ranking:
        """The ``k`` most similar item indices and scores to each item index (models with
        ``abilities.similar_items``); ``-1`` padded, never the item itself."""
        self._require("similar_items")
        self._fitted()
        if k < 1:
            raise ModelError(f"k must be at least 1, got {k}")
        index = np.asarray(items, dtype=np.int64).reshape(-1)
        scores = np.array(self._similar(index), dtype=np.float32, copy=True)
        scores[np.arange(len(index)), index] = -np.inf
        if allowed is not None:
            scores[:, ~allowed] = -np.inf
        best, best_scores = top_k(scores, k)
        if best.shape[1] < k:
            best = np.pad(best, ((0, 0), (0, k - best.shape[1])), constant_values=-1)
            best_scores = np.pad(
                best_scores, ((0, 0), (0, k - best_scores.shape[1])), constant_values=-np.inf
            )
        return Ranking(best, best_scores)

    def _similar(self, items: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        raise ModelError(f"model '{self.name}' does not support similar items")

    # -- fresh events ----------------------------------------------------------------------
    def add_interactions(
        self,
        users: Sequence[object],
        items: Sequence[object],
        values: Sequence[float] | None = None,
    ) -> int:
        """Take new events into account at once, without retraining.

        Every model then excludes these items as seen. Models that can fold a user in
        (``abilities.fold_in``) also update those users' recommendations, and accept users
        they were not trained on. Items the model does not know are ignored (they need a
        retrain). Values add up with what the user had, as duplicates do in a
        :class:`Dataset` with ``aggregate="sum"``. Returns the number of events applied.
        """
        user_map, item_map, seen = self._fitted()
        if len(users) != len(items) or (values is not None and len(values) != len(users)):
            raise ModelError("add_interactions needs users, items (and values) of one length")
        weights = (
            np.ones(len(users), np.float32) if values is None else np.asarray(values, np.float32)
        )
        if not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise DataError("event values must be finite numbers >= 0")
        item_index = item_map.to_index(items, unknown="mark")
        if self.abilities.fold_in:
            # Only users with an event on a known item join: a user whose events all name
            # items the model does not know has nothing to fold in yet.
            user_map = user_map.extend(
                [u for u, i in zip(users, item_index, strict=True) if i >= 0]
            )
        user_index = user_map.to_index(users, unknown="mark")
        keep = (user_index >= 0) & (item_index >= 0)
        if not keep.all():
            logger.info(
                "%s: %d event(s) with unknown users or items ignored", self.name, (~keep).sum()
            )
        grown = sp.csr_matrix(seen, copy=True)
        grown.resize((len(user_map), len(item_map)))
        grown = grown + sp.csr_matrix(
            (weights[keep], (user_index[keep], item_index[keep])), shape=grown.shape
        )
        self.users_ = user_map
        self.seen_ = sp.csr_matrix(grown, dtype=np.float32)
        touched = np.unique(user_index[keep])
        if self.abilities.fold_in and len(touched):
            self._refresh_users(touched)
        return int(keep.sum())

    def _refresh_users(self, users: npt.NDArray[np.int64]) -> None:  # noqa: B027 - optional hook
        """Recompute the state of ``users`` from their rows of ``self.seen_`` (fold-in models).

        Indices may be beyond the users seen in training: grow per-user arrays as needed.
        """

    # -- saving ---------------------------------------------------------------------------
    def _state(self) -> dict[str, npt.NDArray[Any]]:
        """The fitted arrays to save (numeric arrays only)."""
        return {}

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:  # noqa: B027 - optional hook
        """Restore what :meth:`_state` returned."""

    def save(self, directory: str | Path) -> Path:
        """Write the model folder (created if needed; files in it are replaced)."""
        user_map, item_map, seen = self._fitted()
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": self.name,
            "params": self.params.model_dump(mode="json"),
            "abilities": asdict(self.abilities),
            "rekko_version": _version(),
            "metadata": self.metadata_,
        }
        if self.item_features_ is not None:
            meta["item_feature_kinds"] = dict(self.item_features_.kinds)
            _write_features(self.item_features_, folder / "item_features.parquet")
        else:
            (folder / "item_features.parquet").unlink(missing_ok=True)
        (folder / "ids.json").write_text(
            json.dumps({"users": user_map.to_json(), "items": item_map.to_json()})
        )
        np.savez_compressed(
            folder / "seen.npz",
            indptr=seen.indptr,
            indices=seen.indices,
            data=seen.data,
            shape=np.asarray(seen.shape),
        )
        state: dict[str, Any] = self._state()
        np.savez_compressed(folder / "state.npz", allow_pickle=False, **state)
        # model.json last: a folder without it is not a model, so a crash leaves no half model.
        (folder / "model.json").write_text(json.dumps(meta, indent=2))
        return folder

    @classmethod
    def load(cls, directory: str | Path) -> Recommender:
        """Load any model folder (the class is read from ``model.json``)."""
        from rekko.models.registry import get_model_class

        folder = Path(directory)
        meta_path = folder / "model.json"
        if not meta_path.is_file():
            raise ModelError(f"{folder}: not a rekko model folder (no model.json)")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as error:
            raise ModelError(f"{meta_path}: not valid JSON ({error.msg})") from None
        if meta.get("format") != FORMAT:
            raise ModelError(f"{meta_path}: not a rekko model file")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ModelError(
                f"{meta_path}: model format version {meta.get('format_version')} is not "
                f"supported by this rekko (reads version {FORMAT_VERSION})"
            )
        model_class = get_model_class(meta["model"])
        if cls is not Recommender and not issubclass(model_class, cls):
            raise ModelError(f"{folder} holds a '{meta['model']}' model, not '{cls.name}'")
        model = model_class(**meta["params"])
        try:
            ids = json.loads((folder / "ids.json").read_text())
            model.users_ = IdMap.from_json(ids["users"])
            model.items_ = IdMap.from_json(ids["items"])
            with np.load(folder / "seen.npz", allow_pickle=False) as seen:
                model.seen_ = sp.csr_matrix(
                    (seen["data"], seen["indices"], seen["indptr"]), shape=tuple(seen["shape"])
                )
            if "item_feature_kinds" in meta:
                model.item_features_ = _read_features(
                    folder / "item_features.parquet", meta["item_feature_kinds"]
                )
            with np.load(folder / "state.npz", allow_pickle=False) as state:
                model._set_state({name: state[name] for name in state.files})
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as error:
            raise ModelError(
                f"{folder}: the model's files are damaged or incomplete "
                f"({type(error).__name__}: {error})"
            ) from None
        model.metadata_ = meta.get("metadata", {})
        return model


def seen_entries(
    matrix: sp.csr_matrix, rows: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """``(row position, column)`` of the stored entries of ``rows`` of a CSR matrix, read from
    its index arrays (no sub-matrix is built: this runs on every request)."""
    starts = matrix.indptr[rows]
    counts = matrix.indptr[rows + 1] - starts
    if len(rows) == 1:
        return np.zeros(int(counts[0]), np.int64), matrix.indices[starts[0] : starts[0] + counts[0]]
    offsets = np.repeat(starts - (np.cumsum(counts) - counts), counts)
    columns = matrix.indices[offsets + np.arange(int(counts.sum()))]
    return np.repeat(np.arange(len(rows)), counts), columns


def _ranks(counts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """1..n for each group size n, concatenated."""
    total = int(counts.sum())
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(1, total + 1, dtype=np.int64) - starts


def _write_features(features: FeatureTable, path: Path) -> None:
    frame = features.frame.copy()
    for name in features.columns_of("multi"):
        frame[name] = [list(tags) for tags in frame[name]]
    frame.to_parquet(path, index=False)


def _read_features(path: Path, kinds: dict[str, Any]) -> FeatureTable:
    frame = pd.read_parquet(path)
    for name, kind in kinds.items():
        if kind == "multi":
            frame[name] = [tuple(tags) if tags is not None else () for tags in frame[name]]
        elif kind in ("categorical", "text"):
            frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
    return FeatureTable(frame, kinds)


def _version() -> str:
    from rekko import __version__

    return __version__


def _pydantic_message(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "parameters"
        message = "unknown parameter" if item["type"] == "extra_forbidden" else item["msg"]
        parts.append(f"{where}: {message}")
    return "; ".join(parts)
