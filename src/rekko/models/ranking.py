"""Pointwise neural models in TensorFlow / Keras 3, and the ``ranking`` model.

A pointwise model predicts one number per (user, item) pair:

* on explicit ratings, the rating (squared error; ``predict`` and RMSE work);
* on implicit events, the probability of an interaction (binary cross-entropy against
  ``negatives`` items sampled uniformly per positive and epoch; positives are weighted by their
  event value, normalised to a mean of 1, so a purchase counts more than a view).

The prediction is ``offset + user bias + item bias + user . item + MLP([user, item])``, where
``user`` and ``item`` come from towers over ids and features; each part can be switched off,
which gives ``neural-mf`` (biases and dot product over id embeddings) and ``neural-mlp``
(an MLP over id embeddings, as in He et al.'s NCF) in :mod:`rekko.models.neural_cf`.

``ranking`` uses everything: ids and features of both sides. It scores any candidates, so it
can re-rank another model's list (:meth:`RankingModel.rerank`) or serve
``recommend(..., candidates=...)``. Training holds out a random part of the interactions and
stops when the validation loss stops improving, keeping the best epoch's weights.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
from pydantic import Field

from rekko.data.dataset import Dataset
from rekko.errors import ModelError
from rekko.models import _tf
from rekko.models._tf import Arrays, TowerSpec
from rekko.models.base import Abilities
from rekko.models.contract import ExportContract, Network, PairScorer, ScoreKind
from rekko.models.keras_base import Batch, KerasParams, KerasRecommender, Training
from rekko.models.registry import register

logger = logging.getLogger(__name__)


class PointwiseParams(KerasParams):
    """Settings shared by the pointwise models."""

    embedding_dim: int = Field(default=32, ge=1, le=1024, description="Size of the vectors.")
    negatives: int = Field(
        default=4, ge=1, description="Items sampled as negatives per positive (implicit data)."
    )
    id_dropout: float = Field(
        default=0.05,
        ge=0,
        lt=1,
        description="Share of training examples whose ids are replaced by the unknown id.",
    )


class Parts(NamedTuple):
    """Which parts a pointwise model adds up, and its MLP's hidden widths."""

    features: bool
    dot: bool
    mlp: bool
    biases: bool
    hidden: tuple[int, ...]


class PointwiseModel(KerasRecommender):
    """Shared training and scoring of the pointwise models (see module doc)."""

    abilities = Abilities(explicit=True, uses_features=True)
    Params = PointwiseParams
    params: PointwiseParams
    #: ``_score`` of a model trained on implicit data: a probability (True) or the logit.
    scores_probabilities: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._item_cache: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None = None
        self._keras: Any = None
        self.explicit_ = False
        self.offset_ = 0.0

    def _parts(self) -> Parts:
        raise NotImplementedError

    def _declare(self, explicit: bool) -> None:
        # Whether predict() works depends on the training data, so the instance's abilities
        # shadow the class's (which say what the model can do at best).
        self.explicit_ = explicit
        vars(self)["abilities"] = Abilities(
            explicit=explicit,
            uses_features=type(self).abilities.uses_features,
            similar_items=type(self).abilities.similar_items,
        )

    # -- set-up ---------------------------------------------------------------------------
    def _prepare(self, dataset: Dataset) -> None:
        p = self.params
        parts = self._parts()
        self._declare(dataset.explicit)
        self._encode_sides(dataset, parts.features, parts.features)
        self._item_cache = None
        if not (parts.dot or parts.mlp or parts.biases):
            raise ModelError(f"{self.name}: switch on at least one of dot, mlp and biases")
        project = not (self.user_encoder_.is_empty and self.item_encoder_.is_empty)
        self.user_spec_ = TowerSpec(
            "user_",
            dataset.n_users,
            True,
            0,
            self.user_encoder_.input_specs(),
            p.embedding_dim,
            (),
            project,
        )
        self.item_spec_ = TowerSpec(
            "item_",
            dataset.n_items,
            True,
            0,
            self.item_encoder_.input_specs(),
            p.embedding_dim,
            (),
            project,
        )

    def _build(self, keras: Any) -> dict[str, Any]:
        self._keras = keras
        p = self.params
        parts = self._parts()
        regularizer = keras.regularizers.L2(p.l2) if p.l2 > 0 else None
        networks = {
            "user": _tf.build_tower(keras, self.user_spec_, p.seed, p.l2),
            "item": _tf.build_tower(keras, self.item_spec_, p.seed + 1, p.l2),
        }
        sides = (("user", self.user_spec_.n_ids), ("item", self.item_spec_.n_ids))
        for side, count in sides if parts.biases else ():
            ids = keras.Input((), dtype="int32", name=f"{side}_id")
            bias = keras.layers.Embedding(
                count + 1,
                1,
                embeddings_initializer="zeros",
                embeddings_regularizer=regularizer,
                name=f"{side}_bias",
            )(ids)
            networks[f"{side}_bias"] = keras.Model({f"{side}_id": ids}, keras.ops.squeeze(bias, -1))
        if parts.mlp:
            dim = p.embedding_dim
            user = keras.Input((dim,), name="mlp_user")
            item = keras.Input((dim,), name="mlp_item")
            joined = keras.layers.Concatenate()([user, item])
            hidden = _tf.dense_stack(keras, joined, parts.hidden, p.seed + 4, p.l2, "mlp")
            output = keras.layers.Dense(
                1,
                kernel_initializer=keras.initializers.GlorotUniform(seed=p.seed + 50),
                name="mlp_out",
            )(hidden)
            networks["mlp"] = keras.Model([user, item], keras.ops.squeeze(output, -1))
        return networks

    def _forward(self, networks: dict[str, Any], inputs: dict[str, Any], training: bool) -> Any:
        """The raw prediction (logit or rating minus offset) for a batch of pairs."""
        parts = self._parts()
        user = networks["user"](
            {k: inputs[k] for k in self.user_spec_.input_names()}, training=training
        )
        item = networks["item"](
            {k: inputs[k] for k in self.item_spec_.input_names()}, training=training
        )
        total: Any = 0.0
        if parts.biases:
            total = networks["user_bias"](
                {"user_id": inputs["user_id"]}, training=training
            ) + networks["item_bias"]({"item_id": inputs["item_id"]}, training=training)
        if parts.dot:
            total = total + self._keras.ops.sum(user * item, axis=-1)
        if parts.mlp:
            total = total + networks["mlp"]([user, item], training=training)
        return total

    # -- training -------------------------------------------------------------------------
    def _training(self, dataset: Dataset, rng: np.random.Generator) -> Training:
        tf, _ = _tf.tf_modules(self.name)
        p = self.params
        networks = self._network()
        users = dataset.interactions["user"].to_numpy(dtype=np.int64)
        items = dataset.interactions["item"].to_numpy(dtype=np.int64)
        values = dataset.interactions["value"].to_numpy(dtype=np.float32)
        held = (
            _tf.validation_rows(users, p.validation_fraction, rng, min_left=1)
            if p.validation_fraction > 0
            else np.zeros(len(users), dtype=bool)
        )
        train_rows = np.flatnonzero(~held)
        if self.explicit_:
            self.offset_ = float(values[train_rows].mean())
            self.rating_range_ = (float(values.min()), float(values.max()))
            weights = np.ones(len(values), dtype=np.float32)
        else:
            self.offset_ = 0.0
            self.rating_range_ = (0.0, 1.0)
            weights = (values / max(float(values[train_rows].mean()), 1e-12)).astype(np.float32)
        seen = dataset.matrix
        explicit = self.explicit_
        validation = None
        if held.any():
            validation = self._pairs(
                users[held], items[held], values[held], weights[held], seen, rng
            )

        def batches(rng: np.random.Generator) -> Iterator[Batch]:
            pairs = self._pairs(
                users[train_rows],
                items[train_rows],
                values[train_rows],
                weights[train_rows],
                seen,
                rng,
            )
            for rows in _tf.batches(len(pairs[0]), p.batch_size, rng):
                inputs = self._inputs(pairs[0][rows], pairs[1][rows], rng)
                yield inputs, pairs[2][rows], pairs[3][rows]

        def loss(batch: Batch) -> Any:
            inputs, targets, sample_weights = batch
            output = self._forward(networks, inputs, True)
            return self._loss(tf, output, targets, sample_weights, explicit)

        def validate() -> float:
            assert validation is not None
            return self._validation_loss(networks, validation)

        return Training(
            batches=batches,
            loss=loss,
            validate=None if validation is None else validate,
            metric="rmse" if explicit else "loss",
            higher_is_better=False,
        )

    def _loss(self, tf: Any, output: Any, targets: Any, weights: Any, explicit: bool) -> Any:
        if explicit:
            return tf.reduce_mean(tf.square(output - targets))
        per_pair = tf.nn.sigmoid_cross_entropy_with_logits(targets, output)
        return tf.reduce_sum(per_pair * weights) / tf.reduce_sum(weights)

    def _pairs(
        self,
        users: npt.NDArray[np.int64],
        items: npt.NDArray[np.int64],
        values: npt.NDArray[np.float32],
        weights: npt.NDArray[np.float32],
        seen: sp.csr_matrix,
        rng: np.random.Generator,
    ) -> tuple[
        npt.NDArray[np.int64],
        npt.NDArray[np.int64],
        npt.NDArray[np.float32],
        npt.NDArray[np.float32],
    ]:
        """Training pairs ``(users, items, targets, weights)`` of one epoch."""
        if self.explicit_:
            return users, items, values - self.offset_, weights
        n_neg = self.params.negatives
        neg_users = np.repeat(users, n_neg)
        neg_items = rng.integers(0, seen.shape[1], size=len(neg_users))
        # A sampled "negative" the user did interact with is not used.
        clean = np.asarray(seen[neg_users, neg_items]).ravel() == 0
        return (
            np.concatenate([users, neg_users]),
            np.concatenate([items, neg_items]),
            np.concatenate([np.ones(len(users)), np.zeros(len(neg_users))]).astype(np.float32),
            np.concatenate([weights, clean.astype(np.float32)]).astype(np.float32),
        )

    def _inputs(
        self,
        users: npt.NDArray[np.int64],
        items: npt.NDArray[np.int64],
        dropout: np.random.Generator | None = None,
    ) -> Arrays:
        """Inputs of the pair network; unknown users or items are index -1."""
        known_users = users >= 0
        known_items = items >= 0
        user_rows = np.where(known_users, users, 0)
        item_rows = np.where(known_items, items, 0)
        inputs = _tf.take(self.user_codes_, user_rows)
        inputs.update(_tf.take(self.item_codes_, item_rows))
        for name in inputs:
            side_known = known_users if name.startswith("user_") else known_items
            if not side_known.all():
                inputs[name] = inputs[name].copy()
                inputs[name][~side_known] = 0
        user_ids = np.where(known_users & self.user_trained_[user_rows], users + 1, 0)
        item_ids = np.where(known_items & self.item_trained_[item_rows], items + 1, 0)
        if dropout is not None and self.params.id_dropout > 0:
            rate = self.params.id_dropout
            user_ids = np.where(dropout.random(len(users)) < rate, 0, user_ids)
            item_ids = np.where(dropout.random(len(items)) < rate, 0, item_ids)
        inputs["user_id"] = user_ids.astype(np.int32)
        inputs["item_id"] = item_ids.astype(np.int32)
        return inputs

    def _validation_loss(
        self,
        networks: dict[str, Any],
        pairs: tuple[
            npt.NDArray[np.int64],
            npt.NDArray[np.int64],
            npt.NDArray[np.float32],
            npt.NDArray[np.float32],
        ],
    ) -> float:
        output = self._raw(networks, pairs[0], pairs[1])
        if self.explicit_:
            return float(np.sqrt(np.mean((output - pairs[2]) ** 2)))
        probability = 1.0 / (1.0 + np.exp(-output.astype(np.float64)))
        eps = 1e-7
        log_loss = -(
            pairs[2] * np.log(probability + eps) + (1 - pairs[2]) * np.log(1 - probability + eps)
        )
        return float(np.sum(log_loss * pairs[3]) / max(float(np.sum(pairs[3])), 1e-12))

    def _raw(
        self,
        networks: dict[str, Any],
        users: npt.NDArray[np.int64],
        items: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.float32]:
        """Raw outputs (logit, or rating minus offset) for pairs, in batches."""
        out = np.zeros(len(users), dtype=np.float32)
        for start in range(0, len(users), 8192):
            inputs = self._inputs(users[start : start + 8192], items[start : start + 8192])
            out[start : start + 8192] = np.asarray(
                self._forward(networks, inputs, False), dtype=np.float32
            )
        return out

    # -- scoring --------------------------------------------------------------------------
    def _item_vectors(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Item tower outputs and item biases of the whole catalogue (cached)."""
        if self._item_cache is None:
            networks = self._network()
            items = np.arange(len(self.item_trained_))
            inputs = self._inputs(np.zeros(len(items), dtype=np.int64), items)
            vectors = _tf.call_in_batches(
                networks["item"], {k: inputs[k] for k in self.item_spec_.input_names()}
            )
            biases = (
                _tf.call_in_batches(networks["item_bias"], {"item_id": inputs["item_id"]})
                if "item_bias" in networks
                else np.zeros(len(items), dtype=np.float32)
            )
            self._item_cache = (vectors, biases.reshape(-1))
        return self._item_cache

    def _user_parts(
        self, users: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        networks = self._network()
        inputs = self._inputs(users, np.zeros(len(users), dtype=np.int64))
        vectors = _tf.call_in_batches(
            networks["user"], {k: inputs[k] for k in self.user_spec_.input_names()}
        )
        biases = (
            _tf.call_in_batches(networks["user_bias"], {"user_id": inputs["user_id"]})
            if "user_bias" in networks
            else np.zeros(len(users), dtype=np.float32)
        )
        return vectors, biases.reshape(-1)

    def _score_raw(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        p = self._parts()
        item_vectors, item_biases = self._item_vectors()
        user_vectors, user_biases = self._user_parts(users)
        n_items = len(item_vectors)
        scores = np.zeros((len(users), n_items), dtype=np.float32)
        if p.biases:
            scores += user_biases[:, None] + item_biases[None, :]
        if p.dot:
            scores += user_vectors @ item_vectors.T
        if p.mlp and len(users):
            mlp = self._network()["mlp"]
            chunk = max(1, 65_536 // max(n_items, 1))
            for start in range(0, len(users), chunk):
                rows = user_vectors[start : start + chunk]
                left = np.repeat(rows, n_items, axis=0)
                right = np.tile(item_vectors, (len(rows), 1))
                values = np.asarray(mlp([left, right], training=False), dtype=np.float32)
                scores[start : start + len(rows)] += values.reshape(len(rows), n_items)
        return scores

    def _score(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        raw = self._score_raw(users)
        if self.explicit_:
            return raw + np.float32(self.offset_)
        if self.scores_probabilities:
            return (1.0 / (1.0 + np.exp(-raw))).astype(np.float32)
        return raw

    def _predict(
        self, users: npt.NDArray[np.int64], items: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        raw = self._raw(self._network(), users, items) + np.float32(self.offset_)
        low, high = self.rating_range_
        clipped: npt.NDArray[np.float32] = np.clip(raw, low, high).astype(np.float32)
        return clipped

    # -- export ---------------------------------------------------------------------------
    def _score_kind(self) -> ScoreKind:
        """What :meth:`score` returns: a rating on explicit data, else a probability
        (``ranking``) or a logit."""
        if self.explicit_:
            return "rating"
        return "probability" if self.scores_probabilities else "logit"

    def export_contract(self) -> ExportContract:
        """The pair network (raw output: a logit, or the rating minus ``offset``) and what it
        reads per user and item index."""
        self._fitted()
        users, items = self._side_inputs()
        offset = self.offset_ if self.explicit_ else 0.0
        scorer = PairScorer(self._pair_network(), users, items, self._score_kind(), offset)
        return ExportContract(pair_scorer=scorer, vocabularies=self._vocabularies())

    def _pair_network(self) -> Network:
        """One Keras model over both sides' inputs, one raw output per pair."""
        _, keras = _tf.tf_modules(self.name)
        networks = self._network()
        _, _, seen = self._fitted()
        coo = sp.coo_matrix(seen)
        count = min(16, coo.nnz)
        example = self._inputs(coo.row[:count].astype(np.int64), coo.col[:count].astype(np.int64))
        inputs = {
            name: keras.Input(array.shape[1:], dtype=str(array.dtype), name=name)
            for name, array in example.items()
        }
        output = self._forward(networks, inputs, False)
        described: dict[str, Any] = {
            "user_id": {
                "kind": "user index + 1 in users.txt order (0 = unknown user)",
                "vocabulary_size": self.user_spec_.n_ids + 1,
            },
            "item_id": {
                "kind": "item index + 1 in items.txt order (0 = unknown item)",
                "vocabulary_size": self.item_spec_.n_ids + 1,
            },
        }
        described.update(self.user_encoder_.describe())
        described.update(self.item_encoder_.describe())
        return Network(
            keras.Model(inputs, output, name="ranking"),
            example,
            described,
            self.user_spec_.ragged() | self.item_spec_.ragged(),
        )

    # -- saving ---------------------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        return {
            "explicit": self.explicit_,
            "offset": self.offset_,
            "rating_range": list(self.rating_range_),
        }

    def _restore(self, settings: Mapping[str, Any], arrays: Mapping[str, Any]) -> None:
        self._declare(bool(settings["explicit"]))
        self.offset_ = float(settings["offset"])
        low, high = settings["rating_range"]
        self.rating_range_ = (float(low), float(high))
        self._item_cache = None


class RankingParams(PointwiseParams):
    l2: float = Field(default=3e-4, ge=0, description="L2 penalty on embeddings and weights.")
    hidden: tuple[int, ...] = Field(
        default=(64, 32), description="Widths of the MLP's ReLU layers."
    )
    features: bool = Field(default=True, description="Read user and item feature tables.")
    dot: bool = Field(default=True, description="Add the dot product of user and item vectors.")
    mlp: bool = Field(default=True, description="Add an MLP over the user and item vectors.")
    biases: bool = Field(default=True, description="Add a bias per user and per item.")


@register
class RankingModel(PointwiseModel):
    """Predicts a rating or an interaction probability from both sides' ids and features.

    ``predict`` works when trained on ratings; on implicit data scores are probabilities.
    Use :meth:`rerank` to order another model's candidates.
    """

    name = "ranking"
    abilities = Abilities(explicit=True, uses_features=True)
    Params = RankingParams
    params: RankingParams
    scores_probabilities = True

    def _parts(self) -> Parts:
        p = self.params
        return Parts(p.features, p.dot, p.mlp, p.biases, tuple(p.hidden))

    def rerank(self, recommendations: pd.DataFrame, k: int | None = None) -> pd.DataFrame:
        """Re-order each user's items of ``recommendations`` (``user_id``, ``item_id``) by this
        model's score; returns ``user_id, item_id, rank, score`` (top ``k`` per user if given).

        Users or items this model does not know are dropped (logged).
        """
        user_map, item_map, _ = self._fitted()
        for column in ("user_id", "item_id"):
            if column not in recommendations.columns:
                raise ModelError(f"rerank needs a {column!r} column")
        users = user_map.to_index(recommendations["user_id"], unknown="mark")
        items = item_map.to_index(recommendations["item_id"], unknown="mark")
        known = (users >= 0) & (items >= 0)
        if not known.all():
            logger.info("%s: rerank dropped %d unknown pair(s)", self.name, (~known).sum())
        raw = self._raw(self._network(), users[known], items[known])
        score = raw + np.float32(self.offset_) if self.explicit_ else 1.0 / (1.0 + np.exp(-raw))
        frame = pd.DataFrame(
            {
                "user_id": recommendations["user_id"].to_numpy()[known],
                "item_id": recommendations["item_id"].to_numpy()[known],
                "score": np.asarray(score, dtype=np.float32),
                "user": users[known],
                "item": items[known],
            }
        )
        frame = frame.sort_values(["user", "score", "item"], ascending=[True, False, True])
        frame["rank"] = frame.groupby("user").cumcount() + 1
        if k is not None:
            frame = frame[frame["rank"] <= k]
        order = pd.unique(users[known])
        frame["order"] = frame["user"].map({u: i for i, u in enumerate(order)})
        frame = frame.sort_values(["order", "rank"], kind="stable")
        return frame[["user_id", "item_id", "rank", "score"]].reset_index(drop=True)
