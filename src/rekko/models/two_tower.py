"""Two-tower retrieval in TensorFlow / Keras 3 (``two-tower``).

A user tower and an item tower map each side to a vector; the score is their dot product. The
user tower reads the user id (optional), the user's features and a bag of the items the user
interacted with (the mean of their embeddings, as in YouTube's DNN recommender), so a new user
gets a meaningful vector from features and a few events, and fold-in needs no retraining. The
item tower reads the item id and the item's features (categories, multi-valued tags, words of
text, numbers, coordinates).

Training uses a softmax retrieval loss with a temperature: over the **full catalogue** when it is
small (``softmax="auto"`` up to :data:`FULL_SOFTMAX_MAX_ITEMS` items), else over the other
items of the batch with a popularity (log-Q) correction. Accidental hits are removed: a
candidate that is also a positive of the same user never counts as a negative. A random part of
the interactions is held out and training stops when recall on it stops improving; the best
epoch's weights are kept.

After training, the vectors of every user and item are cached as numpy arrays, so recommending,
saving and loading do not need TensorFlow; fold-in, cold users and exports do.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from pydantic import Field

from rekko.data.dataset import Dataset
from rekko.errors import ModelError
from rekko.index.topk import top_k
from rekko.models import _tf
from rekko.models._tf import Arrays, TowerSpec
from rekko.models.base import Abilities
from rekko.models.contract import Embeddings, ExportContract, Network
from rekko.models.keras_base import (
    Batch,
    KerasEmbeddingRecommender,
    KerasParams,
    Training,
    keras_default,
)
from rekko.models.query import Query, QueryScores
from rekko.models.registry import register

logger = logging.getLogger(__name__)

#: ``softmax="auto"`` uses the full catalogue up to this many items, in-batch negatives above.
FULL_SOFTMAX_MAX_ITEMS = 10_000
#: Validation users scored per epoch for early stopping (a fixed random subset).
VALIDATION_USERS = 2_000
VALIDATION_K = 20
_NEG = -1e9


class TwoTowerParams(KerasParams):
    embedding_dim: int = Field(default=64, ge=2, le=1024, description="Size of the vectors.")
    user_id: bool = Field(
        default=False,
        description="Give each user an id embedding (memorises; the history bag does better).",
    )
    item_id: bool = Field(default=True, description="Give each item an id embedding.")
    history: bool = Field(
        default=True, description="Feed the user tower the mean embedding of the user's items."
    )
    history_sample: int = Field(
        default=50, ge=1, description="Items of the history bag sampled per training example."
    )
    history_dropout: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="Share of training examples with an empty history bag (teaches the "
        "tower to serve users from features alone, and the unknown user's vector).",
    )
    feature_dropout: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="Share of training examples whose user features are hidden (teaches the "
        "tower to serve users whose features are unknown).",
    )
    user_features: bool = Field(
        default=False,
        description="Read the user feature table (for cold users; costs accuracy with history).",
    )
    item_features: bool = Field(default=True, description="Read the item feature table.")
    hidden: tuple[int, ...] = Field(
        default=(), description="Widths of ReLU layers in each tower before the output layer."
    )
    temperature: float = Field(default=0.1, gt=0, description="Softmax temperature.")
    softmax: Literal["auto", "full", "in-batch"] = Field(
        default="auto", description="Negatives: the whole catalogue, or the batch's items."
    )
    remove_accidental_hits: bool = Field(
        default=True, description="Never count a user's other positives as negatives."
    )
    id_dropout: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="Share of training examples whose ids are replaced by the unknown id.",
    )
    learning_rate: float = keras_default("learning_rate", 0.005)
    l2: float = keras_default("l2", 0.0)
    max_epochs: int = keras_default("max_epochs", 20)


@register
class TwoTower(KerasEmbeddingRecommender):
    """Two-tower retrieval: dot product of a user tower and an item tower (see module doc)."""

    name = "two-tower"
    abilities = Abilities(
        cold_users=True, uses_features=True, fold_in=True, similar_items=True, queries=True
    )
    Params = TwoTowerParams
    params: TwoTowerParams

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.fallback_vector_: npt.NDArray[np.float32] | None = None
        self._tf: Any = None

    # -- set-up ---------------------------------------------------------------------------
    def _prepare(self, dataset: Dataset) -> None:
        p = self.params
        self._encode_sides(dataset, p.user_features, p.item_features)
        if not (p.user_id or p.history or not self.user_encoder_.is_empty):
            raise ModelError(
                f"{self.name}: the user tower has no inputs: set user_id or history, or train "
                "with user features"
            )
        if not (p.item_id or not self.item_encoder_.is_empty):
            raise ModelError(
                f"{self.name}: the item tower has no inputs: set item_id or train with item "
                "features"
            )
        self.user_spec_ = TowerSpec(
            prefix="user_",
            n_ids=dataset.n_users,
            use_id=p.user_id,
            history_items=dataset.n_items if p.history else 0,
            features=self.user_encoder_.input_specs(),
            dim=p.embedding_dim,
            hidden=tuple(p.hidden),
        )
        self.item_spec_ = TowerSpec(
            prefix="item_",
            n_ids=dataset.n_items,
            use_id=p.item_id,
            history_items=0,
            features=self.item_encoder_.input_specs(),
            dim=p.embedding_dim,
            hidden=tuple(p.hidden),
        )
        self.n_trained_users_ = dataset.n_users
        self._prepare_extra(dataset)

    def _build(self, keras: Any) -> dict[str, Any]:
        """The Keras models of this model, by name (subclasses add heads)."""
        return {
            "user": _tf.build_tower(keras, self.user_spec_, self.params.seed, self.params.l2),
            "item": _tf.build_tower(keras, self.item_spec_, self.params.seed + 1, self.params.l2),
        }

    # -- training -------------------------------------------------------------------------
    def _training(self, dataset: Dataset, rng: np.random.Generator) -> Training:
        tf, _ = _tf.tf_modules(self.name)
        self._tf = tf
        p = self.params
        networks = self._network()
        users = dataset.interactions["user"].to_numpy(dtype=np.int64)
        items = dataset.interactions["item"].to_numpy(dtype=np.int64)
        held = (
            _tf.validation_rows(users, p.validation_fraction, rng, min_left=2)
            if p.validation_fraction > 0
            else np.zeros(len(users), dtype=bool)
        )
        train_rows = np.flatnonzero(~held)
        history = _binary(users[train_rows], items[train_rows], dataset.n_users, dataset.n_items)
        full = p.softmax == "full" or (
            p.softmax == "auto" and dataset.n_items <= FULL_SOFTMAX_MAX_ITEMS
        )
        popularity = np.bincount(items[train_rows], minlength=dataset.n_items) + 1.0
        log_q = np.log(popularity / popularity.sum()).astype(np.float32)
        validation = self._validation_set(users[held], items[held], rng)

        def batches(rng: np.random.Generator) -> Iterator[Batch]:
            for rows in _tf.batches(len(train_rows), p.batch_size, rng):
                chosen = train_rows[rows]
                batch_users, batch_items = users[chosen], items[chosen]
                bags = None
                if p.history:
                    bags = _tf.sample_bags(history, batch_users, batch_items, p.history_sample, rng)
                    if p.history_dropout > 0:
                        bags[rng.random(len(bags)) < p.history_dropout] = 0
                user_inputs = self._user_inputs(batch_users, bags, dropout=rng)
                item_ids = (
                    self._item_ids(np.arange(dataset.n_items), rng)
                    if full
                    else self._item_ids(batch_items, rng)
                )
                if full:
                    mask = (
                        _other_positives(history, batch_users, batch_items)
                        if p.remove_accidental_hits
                        else np.zeros((len(chosen), dataset.n_items), dtype=bool)
                    )
                    correction = np.zeros(len(chosen), dtype=np.float32)
                else:
                    mask = batch_items[:, None] == batch_items[None, :]
                    np.fill_diagonal(mask, False)
                    correction = log_q[batch_items]
                yield (
                    user_inputs,
                    item_ids,
                    batch_items.astype(np.int32),
                    mask,
                    correction,
                    self._extra_targets(chosen),
                )

        def validate() -> float:
            assert validation is not None
            return self._validation_recall(networks, history, validation)

        return Training(
            batches=batches,
            loss=self._loss(tf, networks, full),
            validate=None if validation is None else validate,
            metric=f"recall@{VALIDATION_K}",
            higher_is_better=True,
        )

    def _loss(self, tf: Any, networks: dict[str, Any], full: bool) -> Any:
        """The retrieval loss of a batch (plus the extra objectives of subclasses)."""
        temperature = float(self.params.temperature)
        item_inputs_all = {k: tf.constant(v) for k, v in self.item_codes_.items()}
        remove_hits = self.params.remove_accidental_hits

        def loss(batch: Batch) -> Any:
            user_inputs, item_ids, positives, mask, log_q, targets = batch
            user_vectors = networks["user"](user_inputs, training=True)
            if full:
                item_inputs = dict(item_inputs_all)
                if self.item_spec_.use_id:
                    item_inputs["item_id"] = item_ids
                all_items = networks["item"](item_inputs, training=True)
                logits = tf.matmul(user_vectors, all_items, transpose_b=True) / temperature
                labels = positives
                item_vectors = tf.gather(all_items, positives)
            else:
                item_inputs = {k: tf.gather(v, positives) for k, v in item_inputs_all.items()}
                if self.item_spec_.use_id:
                    item_inputs["item_id"] = item_ids
                item_vectors = networks["item"](item_inputs, training=True)
                logits = tf.matmul(user_vectors, item_vectors, transpose_b=True) / temperature
                logits = logits - log_q[None, :]
                labels = tf.range(tf.shape(logits)[0])
            if remove_hits or not full:
                logits = tf.where(mask, tf.constant(_NEG, logits.dtype), logits)
            retrieval = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
            )
            return self._combine_loss(retrieval, networks, user_vectors, item_vectors, targets)

        return loss

    def _after_fit(self, dataset: Dataset) -> None:
        self._cache_vectors(dataset.matrix)

    # Hooks for multitask heads ------------------------------------------------------------
    def _prepare_extra(self, dataset: Dataset) -> None:
        """Per-interaction targets of extra objectives (none for plain retrieval)."""

    def _extra_targets(self, rows: npt.NDArray[np.int64]) -> dict[str, npt.NDArray[Any]]:
        return {}

    def _combine_loss(
        self,
        retrieval: Any,
        networks: dict[str, Any],
        user_vectors: Any,
        item_vectors: Any,
        targets: dict[str, Any],
    ) -> Any:
        return retrieval

    # -- inputs ---------------------------------------------------------------------------
    def _user_inputs(
        self,
        users: npt.NDArray[np.int64],
        bags: npt.NDArray[np.int32] | None,
        dropout: np.random.Generator | None = None,
        known: npt.NDArray[np.bool_] | None = None,
    ) -> Arrays:
        """Inputs of the user tower for user indices (rows of ``user_codes_``)."""
        inputs = _tf.take(self.user_codes_, users)
        if dropout is not None and self.params.feature_dropout > 0 and inputs:
            hidden = dropout.random(len(users)) < self.params.feature_dropout
            for array in inputs.values():
                array[hidden] = 0
        if self.user_spec_.use_id:
            ids = users.astype(np.int32) + 1
            if known is not None:
                ids = np.where(known, ids, 0).astype(np.int32)
            if dropout is not None and self.params.id_dropout > 0:
                ids = np.where(dropout.random(len(ids)) < self.params.id_dropout, 0, ids)
            inputs["user_id"] = ids.astype(np.int32)
        if self.user_spec_.history_items:
            inputs["user_history"] = (
                bags if bags is not None else np.zeros((len(users), 1), dtype=np.int32)
            )
        return inputs

    def _item_ids(
        self, items: npt.NDArray[np.int64], dropout: np.random.Generator | None
    ) -> npt.NDArray[np.int32]:
        ids = np.where(self.item_trained_[items], items + 1, 0).astype(np.int32)
        if dropout is not None and self.params.id_dropout > 0:
            ids = np.where(dropout.random(len(ids)) < self.params.id_dropout, 0, ids)
        return ids.astype(np.int32)

    def _item_inputs(self) -> Arrays:
        inputs = dict(self.item_codes_)
        if self.item_spec_.use_id:
            inputs["item_id"] = self._item_ids(np.arange(len(self.item_trained_)), None)
        return inputs

    def _user_vectors(
        self, users: npt.NDArray[np.int64], matrix: sp.csr_matrix
    ) -> npt.NDArray[np.float32]:
        """User tower outputs for user indices, with their whole rows of ``matrix`` as bag."""
        networks = self._network()
        out = np.zeros((len(users), self.params.embedding_dim), dtype=np.float32)
        known = (users < self.n_trained_users_) & self.user_trained_[
            np.minimum(users, self.n_trained_users_ - 1)
        ]
        for start in range(0, len(users), 256):
            batch = users[start : start + 256]
            bags = _tf.pad_rows(matrix, batch) if self.user_spec_.history_items else None
            inputs = self._user_inputs(
                np.minimum(batch, self.n_trained_users_ - 1), bags, known=known[start : start + 256]
            )
            unknown = batch >= self.n_trained_users_
            if unknown.any():
                empty = self.user_encoder_.empty(int(unknown.sum()))
                for name, array in empty.items():
                    inputs[name] = inputs[name].copy()
                    inputs[name][unknown] = array
            out[start : start + len(batch)] = _tf.call_in_batches(networks["user"], inputs)
        return out

    def _cache_vectors(self, matrix: sp.csr_matrix) -> None:
        networks = self._network()
        self.item_vectors_ = _tf.call_in_batches(networks["item"], self._item_inputs())
        self.user_vectors_ = self._user_vectors(np.arange(matrix.shape[0]), matrix)
        self.fallback_vector_ = self._vector_for_inputs(self.user_encoder_.empty(1))[0]

    def _vector_for_inputs(self, features: Arrays, bag: npt.NDArray[np.int32] | None = None) -> Any:
        inputs = dict(features)
        n_rows = len(next(iter(features.values()))) if features else 1
        if self.user_spec_.use_id:
            inputs["user_id"] = np.zeros(n_rows, dtype=np.int32)
        if self.user_spec_.history_items:
            inputs["user_history"] = (
                bag if bag is not None else np.zeros((n_rows, 1), dtype=np.int32)
            )
        return _tf.call_in_batches(self._network()["user"], inputs)

    # -- validation -----------------------------------------------------------------------
    def _validation_set(
        self, users: npt.NDArray[np.int64], items: npt.NDArray[np.int64], rng: np.random.Generator
    ) -> sp.csr_matrix | None:
        if len(users) == 0:
            return None
        matrix = _binary(users, items, self.n_trained_users_, len(self.item_trained_))
        rows = np.flatnonzero(np.diff(matrix.indptr))
        if len(rows) > VALIDATION_USERS:
            keep = np.zeros(matrix.shape[0], dtype=bool)
            keep[rng.choice(rows, VALIDATION_USERS, replace=False)] = True
            matrix = sp.csr_matrix(matrix.multiply(keep[:, None]))
        return matrix

    def _validation_recall(
        self, networks: dict[str, Any], history: sp.csr_matrix, validation: sp.csr_matrix
    ) -> float:
        users = np.flatnonzero(np.diff(validation.indptr))
        item_vectors = _tf.call_in_batches(networks["item"], self._item_inputs())
        user_vectors = self._user_vectors(users, history)
        scores = user_vectors @ item_vectors.T
        seen = history[users]
        scores[np.repeat(np.arange(len(users)), np.diff(seen.indptr)), seen.indices] = -np.inf
        best, _ = top_k(scores, VALIDATION_K)
        truth = validation[users]
        hits = 0.0
        for row in range(len(users)):
            relevant = truth.indices[truth.indptr[row] : truth.indptr[row + 1]]
            hits += np.isin(best[row], relevant).sum() / min(len(relevant), VALIDATION_K)
        return hits / max(len(users), 1)

    # -- scoring --------------------------------------------------------------------------
    # -- new users ------------------------------------------------------------------------
    def _refresh_users(self, users: npt.NDArray[np.int64]) -> None:
        _, _, seen = self._fitted()
        user_vectors, _ = self._vectors()
        if seen.shape[0] > len(user_vectors):
            grown = np.zeros((seen.shape[0], user_vectors.shape[1]), dtype=np.float32)
            grown[: len(user_vectors)] = user_vectors
            user_vectors = grown
        user_vectors[users] = self._user_vectors(users, sp.csr_matrix(seen))
        self.user_vectors_ = user_vectors

    def user_vector_for(
        self, features: Mapping[str, object] | None = None, history: Iterable[object] = ()
    ) -> npt.NDArray[np.float32]:
        """The user tower's vector for someone the model does not know.

        ``features`` holds the user feature columns the model was trained with (missing ones
        count as unknown; a multi-valued one as a list or ``"a|b"``); ``history`` the external
        ids of items the user interacted with (unknown ones are ignored).
        """
        _, item_map, _ = self._fitted()
        if features and self.user_encoder_.is_empty:
            raise ModelError(
                f"model '{self.name}' was trained without user features; train it with "
                "user_features=True on data with a user feature table to serve users by features"
            )
        encoded = self.user_encoder_.encode_records([dict(features or {})])
        bag = None
        if self.user_spec_.history_items:
            index = item_map.to_index(list(history), unknown="mark")
            index = index[index >= 0]
            bag = np.zeros((1, max(1, len(index))), dtype=np.int32)
            bag[0, : len(index)] = index + 1
        return np.asarray(self._vector_for_inputs(encoded, bag)[0], dtype=np.float32)

    def _query_scores(
        self, query: Query, boost: npt.NDArray[np.float64] | None
    ) -> QueryScores | None:
        """The user tower's vector from the query's user features and basket (its items as
        the user's history), against every item. Text and item preferences are not read."""
        if not query.user_features and not query.basket:
            return None
        _, item_vectors = self._vectors()
        vector = self.user_vector_for(query.user_features, query.basket)
        return QueryScores(np.asarray(item_vectors @ vector, dtype=np.float32), self.name)

    # -- export ---------------------------------------------------------------------------
    def export_contract(self) -> ExportContract:
        """The user and item vectors (the fallback is the user tower with no id, features or
        history) and the user tower itself, so an app computes a new user's vector."""
        self._fitted()
        user_vectors, item_vectors = self._vectors()
        assert self.fallback_vector_ is not None
        return ExportContract(
            embeddings=Embeddings(user_vectors, item_vectors, self.fallback_vector_),
            user_tower=self._user_tower(),
            vocabularies=self._vocabularies(),
        )

    def _user_tower(self) -> Network:
        _, _, seen = self._fitted()
        users = np.arange(min(8, self.n_trained_users_, seen.shape[0]))
        bags = _tf.pad_rows(sp.csr_matrix(seen), users) if self.user_spec_.history_items else None
        example = self._user_inputs(users, bags, known=self.user_trained_[users])
        described: dict[str, Any] = dict(self.user_encoder_.describe())
        if self.user_spec_.use_id:
            described["user_id"] = {
                "kind": "user index + 1 in users.txt order (0 = unknown user)",
                "vocabulary_size": self.user_spec_.n_ids + 1,
            }
        if self.user_spec_.history_items:
            described["user_history"] = {
                "kind": "item indices + 1 in items.txt order, 0-padded (the user's items)",
                "vocabulary_size": self.user_spec_.history_items + 1,
            }
        return Network(self._network()["user"], example, described, self.user_spec_.ragged())

    # -- saving ---------------------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        return {"n_trained_users": self.n_trained_users_}

    def _extra_state(self) -> Arrays:
        user_vectors, item_vectors = self._vectors()
        assert self.fallback_vector_ is not None
        return {
            "user_vectors": user_vectors,
            "item_vectors": item_vectors,
            "fallback_vector": self.fallback_vector_,
        }

    def _restore(self, settings: Mapping[str, Any], arrays: Mapping[str, Any]) -> None:
        self.n_trained_users_ = int(settings["n_trained_users"])
        self.user_vectors_ = arrays["user_vectors"]
        self.item_vectors_ = arrays["item_vectors"]
        self.fallback_vector_ = arrays["fallback_vector"]


def _binary(
    users: npt.NDArray[np.int64], items: npt.NDArray[np.int64], n_users: int, n_items: int
) -> sp.csr_matrix:
    matrix = sp.csr_matrix(
        (np.ones(len(users), dtype=np.float32), (users, items)), shape=(n_users, n_items)
    )
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix


def _other_positives(
    history: sp.csr_matrix, users: npt.NDArray[np.int64], items: npt.NDArray[np.int64]
) -> npt.NDArray[np.bool_]:
    """For each (user, item) pair, the user's other training items (accidental hits)."""
    rows = history[users]
    mask = np.zeros(rows.shape, dtype=bool)
    mask[np.repeat(np.arange(len(users)), np.diff(rows.indptr)), rows.indices] = True
    mask[np.arange(len(users)), items] = False
    return mask
