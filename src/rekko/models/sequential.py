"""Next-item prediction from the order of events: causal self-attention (``sequential``).

A SASRec-like encoder (Kang & McAuley, 2018) reads a user's last ``max_length`` events, oldest
first, as item embeddings plus learned position embeddings (plus an event-type embedding when
the data has event types), through ``n_blocks`` pre-norm Transformer blocks with a causal mask.
The output at the latest position is the user's state; an item's score is the dot product of
that state with the item's embedding (the input table, shared).

Training predicts, at every position of every window of a user's history, the next item, with a
cross-entropy over the **full catalogue** (``softmax="auto"`` up to
:data:`FULL_SOFTMAX_MAX_ITEMS` items) or over ``n_negatives`` sampled items with a log-Q
correction. Events are ordered by ``timestamp`` (else by their order in the source), ties by
item index. The last event of a share of users (``validation_fraction``) is held out, and
training stops when NDCG@10 on it stops improving; the best epoch's weights are kept.

Fold-in: the model keeps every user's last ``max_length`` events; :meth:`add_interactions`
appends new events (in the order given) and recomputes those users' states with the encoder,
so the latest events drive the recommendations without retraining, for new users too.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
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

#: ``softmax="auto"`` uses the full catalogue up to this many items, sampled negatives above.
FULL_SOFTMAX_MAX_ITEMS = 20_000
#: Validation users scored per epoch for early stopping (a fixed random subset).
VALIDATION_USERS = 2_000
VALIDATION_K = 10
#: Share of training events whose event type is hidden (code 0), so the encoder also reads
#: events folded in without a type.
EVENT_DROPOUT = 0.1
_NEG = -1e9


class SequentialParams(KerasParams):
    max_length: int = Field(default=50, ge=2, le=1024, description="Latest events read.")
    embedding_dim: int = Field(default=64, ge=4, le=1024, description="Size of the vectors.")
    n_blocks: int = Field(default=2, ge=1, le=8, description="Self-attention blocks.")
    n_heads: int = Field(default=1, ge=1, le=16, description="Attention heads per block.")
    dropout: float = Field(default=0.2, ge=0, lt=1, description="Dropout in the encoder.")
    event_types: bool = Field(
        default=True, description="Read the event type of each event (data with an event column)."
    )
    softmax: Literal["auto", "full", "sampled"] = Field(
        default="auto", description="Negatives: the whole catalogue, or sampled items."
    )
    n_negatives: int = Field(
        default=256, ge=1, description="Negatives per batch with the sampled softmax."
    )
    validation_fraction: float = Field(
        default=0.2,
        ge=0,
        lt=1,
        description="Share of users whose last event is held out for early stopping "
        "(0: train max_epochs).",
    )
    learning_rate: float = keras_default("learning_rate", 0.001)
    batch_size: int = keras_default("batch_size", 128)
    l2: float = keras_default("l2", 0.0)
    max_epochs: int = keras_default("max_epochs", 20)
    patience: int = keras_default("patience", 3)


@register
class Sequential(KerasEmbeddingRecommender):
    """Causal self-attention over each user's latest events (see module doc)."""

    name = "sequential"
    abilities = Abilities(fold_in=True, similar_items=True, queries=True)
    Params = SequentialParams
    params: SequentialParams

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.params.embedding_dim % self.params.n_heads:
            raise ModelError(
                f"{self.name}: embedding_dim ({self.params.embedding_dim}) must be a multiple "
                f"of n_heads ({self.params.n_heads})"
            )
        self._pending: tuple[list[object], list[object]] | None = None

    # -- set-up ---------------------------------------------------------------------------
    def _prepare(self, dataset: Dataset) -> None:
        p = self.params
        self._encode_sides(dataset, False, False)
        # The base's tower specs describe ids only (this model has no feature towers).
        self.user_spec_ = TowerSpec("user_", dataset.n_users, False, dataset.n_items, {}, 1)
        self.item_spec_ = TowerSpec("item_", dataset.n_items, True, 0, {}, p.embedding_dim)
        frame = dataset.interactions
        has_events = p.event_types and "event" in frame.columns
        labels = sorted(frame["event"].astype(str).unique()) if has_events else []
        self.event_labels_ = labels
        ordered = _chronological(frame)
        users = ordered["user"].to_numpy(np.int64)
        items = ordered["item"].to_numpy(np.int64) + 1
        codes = (
            pd.Categorical(ordered["event"].astype(str), categories=labels).codes + 1
            if labels
            else np.zeros(len(ordered), np.int64)
        )
        starts = np.searchsorted(users, np.arange(dataset.n_users + 1))
        self._histories = [
            (items[a:b].astype(np.int32), codes[a:b].astype(np.int32))
            for a, b in itertools.pairwise(starts)
        ]
        self.sequences_, self.sequence_events_ = self._latest(self._histories)

    def _latest(
        self, histories: Sequence[tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]]
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
        """Each history's last ``max_length`` items (+1) and event codes, left-padded with 0."""
        n = self.params.max_length
        items = np.zeros((len(histories), n), np.int32)
        events = np.zeros((len(histories), n), np.int32)
        for row, (history, codes) in enumerate(histories):
            take = min(len(history), n)
            if take:
                items[row, n - take :] = history[-take:]
                events[row, n - take :] = codes[-take:]
        return items, events

    def _build(self, keras: Any) -> dict[str, Any]:
        p = self.params
        layers = keras.layers
        n = p.max_length
        dim = p.embedding_dim
        regularizer = keras.regularizers.L2(p.l2) if p.l2 > 0 else None
        seeds = iter(range(p.seed * 101, p.seed * 101 + 1000))

        def init() -> Any:
            return keras.initializers.RandomNormal(0.0, 0.05, seed=next(seeds))

        item_input = keras.Input((n,), dtype="int32", name="history")
        inputs = {"history": item_input}
        table = layers.Embedding(
            self.item_spec_.n_ids + 1,
            dim,
            embeddings_initializer=init(),
            embeddings_regularizer=regularizer,
            name="item_embedding",
        )
        x = table(item_input) * float(np.sqrt(dim))
        positions = layers.Embedding(n, dim, embeddings_initializer=init(), name="positions")
        x = x + positions(keras.ops.arange(n))[None, :, :]
        if self.event_labels_:
            event_input = keras.Input((n,), dtype="int32", name="events")
            inputs["events"] = event_input
            events = layers.Embedding(
                len(self.event_labels_) + 1, dim, embeddings_initializer=init(), name="events_emb"
            )
            x = x + events(event_input)
        present = keras.ops.cast(keras.ops.not_equal(item_input, 0), "float32")[:, :, None]
        causal = np.tril(np.ones((n, n), dtype=bool))
        # Query i may read key j <= i that holds an event (padding is masked out as a key).
        mask = keras.ops.logical_and(
            keras.ops.convert_to_tensor(causal)[None, :, :],
            keras.ops.not_equal(item_input, 0)[:, None, :],
        )
        x = layers.Dropout(p.dropout, seed=next(seeds))(x) * present
        for block in range(p.n_blocks):
            normed = layers.LayerNormalization(epsilon=1e-6, name=f"attention_norm{block}")(x)
            attended = layers.MultiHeadAttention(
                p.n_heads,
                dim // p.n_heads,
                dropout=p.dropout,
                kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds)),
                seed=next(seeds),
                name=f"attention{block}",
            )(normed, normed, attention_mask=mask)
            x = x + layers.Dropout(p.dropout, seed=next(seeds))(attended)
            normed = layers.LayerNormalization(epsilon=1e-6, name=f"ffn_norm{block}")(x)
            hidden = layers.Dense(
                dim,
                activation="gelu",
                kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds)),
                kernel_regularizer=regularizer,
                name=f"ffn{block}_in",
            )(normed)
            hidden = layers.Dropout(p.dropout, seed=next(seeds))(hidden)
            hidden = layers.Dense(
                dim,
                kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds)),
                kernel_regularizer=regularizer,
                name=f"ffn{block}_out",
            )(hidden)
            x = (x + layers.Dropout(p.dropout, seed=next(seeds))(hidden)) * present
        states = layers.LayerNormalization(epsilon=1e-6, name="output_norm")(x)
        return {"encoder": keras.Model(inputs, states, name="sequence_encoder")}

    def _state_network(self) -> Any:
        """The encoder read at the latest position: sequences -> one state per row."""
        _, keras = _tf.tf_modules(self.name)
        encoder = self._network()["encoder"]
        cached = getattr(self, "_state_cache", None)
        if cached is None or cached[0] is not encoder:
            state = keras.Model(encoder.inputs, encoder.outputs[0][:, -1, :], name="user_state")
            cached = (encoder, state)
            self._state_cache = cached
        return cached[1]

    # -- training -------------------------------------------------------------------------
    def _training(self, dataset: Dataset, rng: np.random.Generator) -> Training:
        tf, _ = _tf.tf_modules(self.name)
        p = self.params
        networks = self._network()
        n = p.max_length
        lengths = np.array([len(h) for h, _ in self._histories])
        candidates = np.flatnonzero(lengths >= 3)
        chosen = rng.random(len(candidates)) < p.validation_fraction
        held = candidates[chosen]
        if len(held) > VALIDATION_USERS:
            held = np.sort(rng.choice(held, VALIDATION_USERS, replace=False))
        held_set = np.zeros(len(self._histories), bool)
        held_set[held] = True
        train_histories = [
            (h[:-1], c[:-1]) if held_set[u] else (h, c) for u, (h, c) in enumerate(self._histories)
        ]
        windows_items, windows_events, targets = _windows(train_histories, n)
        full = p.softmax == "full" or (
            p.softmax == "auto" and dataset.n_items <= FULL_SOFTMAX_MAX_ITEMS
        )
        n_items = dataset.n_items
        popularity = np.bincount(targets[targets > 0] - 1, minlength=n_items) + 1.0
        sample_p = popularity / popularity.sum()
        log_q = np.log(sample_p).astype(np.float32)
        has_events = bool(self.event_labels_)

        def batches(rng: np.random.Generator) -> Iterator[Batch]:
            for rows in _tf.batches(len(targets), p.batch_size, rng):
                events = windows_events[rows]
                if has_events:
                    events = np.where(rng.random(events.shape) < EVENT_DROPOUT, 0, events)
                negatives = (
                    np.zeros(1, np.int32)
                    if full
                    else rng.choice(n_items, p.n_negatives, p=sample_p).astype(np.int32)
                )
                yield windows_items[rows], events.astype(np.int32), targets[rows], negatives

        encoder = networks["encoder"]
        table = encoder.get_layer("item_embedding")
        log_q_tensor = tf.constant(log_q)

        def loss(batch: Batch) -> Any:
            history, events, target, negatives = batch
            inputs = {"history": history}
            if has_events:
                inputs["events"] = events
            states = encoder(inputs, training=True)
            keep = tf.not_equal(target, 0)
            states = tf.boolean_mask(states, keep)
            labels = tf.boolean_mask(target, keep) - 1
            items = table.embeddings[1:]
            if full:
                logits = tf.matmul(states, items, transpose_b=True)
                losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
            else:
                positive = tf.reduce_sum(states * tf.gather(items, labels), axis=1)
                sampled = tf.matmul(states, tf.gather(items, negatives), transpose_b=True)
                sampled = sampled - tf.gather(log_q_tensor, negatives)[None, :]
                hits = tf.equal(labels[:, None], negatives[None, :])
                sampled = tf.where(hits, tf.constant(_NEG, sampled.dtype), sampled)
                positive = positive - tf.gather(log_q_tensor, labels)
                logits = tf.concat([positive[:, None], sampled], axis=1)
                losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
                    tf.zeros_like(labels), logits
                )
            return tf.reduce_mean(losses)

        validate = None
        if len(held):
            val_items, val_events = self._latest([train_histories[u] for u in held])
            val_targets = np.array([self._histories[u][0][-1] - 1 for u in held])
            val_seen = [train_histories[u][0] - 1 for u in held]

            def validate() -> float:
                vectors = self._states(val_items, val_events)
                scores = vectors @ np.asarray(table.embeddings)[1:].T
                for row, seen in enumerate(val_seen):
                    scores[row, seen] = -np.inf
                best, _ = top_k(scores, VALIDATION_K)
                hit_rank = np.argmax(best == val_targets[:, None], axis=1)
                found = (best == val_targets[:, None]).any(axis=1)
                return float(np.mean(np.where(found, 1.0 / np.log2(hit_rank + 2.0), 0.0)))

        return Training(
            batches=batches,
            loss=loss,
            validate=validate,
            metric=f"ndcg@{VALIDATION_K}",
            higher_is_better=True,
        )

    def _states(
        self, items: npt.NDArray[np.int32], events: npt.NDArray[np.int32]
    ) -> npt.NDArray[np.float32]:
        """The encoder's state at the latest position of each (left-padded) sequence."""
        inputs: Arrays = {"history": items}
        if self.event_labels_:
            inputs["events"] = events
        states = _tf.call_in_batches(self._state_network(), inputs, batch_size=1024)
        # A user without events has no state: a zero vector (every item scores 0).
        empty = ~(items > 0).any(axis=1)
        states[empty] = 0.0
        return states

    def _after_fit(self, dataset: Dataset) -> None:
        del self._histories
        table = self._network()["encoder"].get_layer("item_embedding")
        self.item_vectors_ = np.asarray(table.embeddings, dtype=np.float32)[1:]
        self.user_vectors_ = self._states(self.sequences_, self.sequence_events_)

    # -- scoring --------------------------------------------------------------------------
    # -- new events -----------------------------------------------------------------------
    def add_interactions(
        self,
        users: Sequence[object],
        items: Sequence[object],
        values: Sequence[float] | None = None,
    ) -> int:
        """As :meth:`Recommender.add_interactions`; the events are also appended, in the order
        given, to each user's latest events, which the encoder then reads."""
        self._pending = (list(users), list(items))
        try:
            return super().add_interactions(users, items, values)
        finally:
            self._pending = None

    def _refresh_users(self, users: npt.NDArray[np.int64]) -> None:
        user_map, item_map, seen = self._fitted()
        user_vectors, _ = self._vectors()
        sequences, events = self.sequences_, self.sequence_events_
        if len(user_map) > len(sequences):  # new users: grown copies (the original keeps serving)
            grow = len(user_map) - len(sequences)
            sequences = np.vstack([sequences, np.zeros((grow, sequences.shape[1]), np.int32)])
            events = np.vstack([events, np.zeros((grow, events.shape[1]), np.int32)])
            user_vectors = np.vstack(
                [user_vectors, np.zeros((grow, user_vectors.shape[1]), np.float32)]
            )
        else:
            sequences, events, user_vectors = sequences.copy(), events.copy(), user_vectors.copy()
        pending = self._pending
        new: dict[int, list[int]] = {int(u): [] for u in users}
        if pending is not None:
            event_users = user_map.to_index(pending[0], unknown="mark")
            event_items = item_map.to_index(pending[1], unknown="mark")
            for user, item in zip(event_users, event_items, strict=True):
                if user >= 0 and item >= 0 and int(user) in new:
                    new[int(user)].append(int(item) + 1)
        for user, appended in new.items():
            row = [int(i) for i in sequences[user] if i > 0]
            codes = [int(c) for c, i in zip(events[user], sequences[user], strict=True) if i > 0]
            # Seen items missing from a row that holds the whole history are new events from
            # a caller that did not say their order (an ensemble): they come first.
            extra = []
            if len(row) < self.params.max_length:
                known = set(row) | set(appended)
                extra = [int(i) + 1 for i in seen[user].indices if int(i) + 1 not in known]
            for item in [*extra, *appended]:
                if item in row:  # an item again: it moves to the latest position
                    at = row.index(item)
                    del row[at], codes[at]
                row.append(item)
                codes.append(0)  # folded-in events carry no type
            take = min(len(row), self.params.max_length)
            sequences[user] = 0
            events[user] = 0
            if take:
                sequences[user, -take:] = row[-take:]
                events[user, -take:] = codes[-take:]
        touched = np.asarray(sorted(new), np.int64)
        user_vectors[touched] = self._states(sequences[touched], events[touched])
        self.sequences_, self.sequence_events_, self.user_vectors_ = sequences, events, user_vectors

    def _query_scores(
        self, query: Query, boost: npt.NDArray[np.float64] | None
    ) -> QueryScores | None:
        """The basket, in the order given (latest last), read as the visitor's events."""
        _, item_map, _ = self._fitted()
        index = item_map.to_index(list(query.basket), unknown="mark")
        index = index[index >= 0]
        if len(index) == 0:
            return None
        _, item_vectors = self._vectors()
        n = self.params.max_length
        sequence = np.zeros((1, n), np.int32)
        take = min(len(index), n)
        sequence[0, n - take :] = index[-take:] + 1
        state = self._states(sequence, np.zeros_like(sequence))[0]
        return QueryScores(np.asarray(item_vectors @ state, dtype=np.float32), self.name)

    # -- export ---------------------------------------------------------------------------
    def export_contract(self) -> ExportContract:
        """Every user's state and the item embeddings (the fallback, for unknown users, is a
        zero vector: every item scores 0), and the encoder as the user tower: an app
        computes a state from the latest item indices + 1, left-padded with 0."""
        user_vectors, item_vectors = self._vectors()
        example: Arrays = {"history": self.sequences_[:8]}
        described: dict[str, Any] = {
            "history": {
                "kind": f"the latest {self.params.max_length} item indices + 1 in items.txt "
                "order, oldest first, left-padded with 0",
                "vocabulary_size": len(item_vectors) + 1,
            }
        }
        if self.event_labels_:
            example["events"] = self.sequence_events_[:8]
            described["events"] = {
                "kind": "event type code of each history position (0 = unknown or padding)",
                "vocabulary_size": len(self.event_labels_) + 1,
            }
        fallback = np.zeros(item_vectors.shape[1], np.float32)
        return ExportContract(
            embeddings=Embeddings(user_vectors, item_vectors, fallback),
            user_tower=Network(self._state_network(), example, described),
            vocabularies=(
                {"events": {"labels": list(self.event_labels_)}} if self.event_labels_ else {}
            ),
        )

    # -- saving ---------------------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        return {"event_labels": list(self.event_labels_)}

    def _extra_state(self) -> Arrays:
        user_vectors, item_vectors = self._vectors()
        return {
            "user_vectors": user_vectors,
            "item_vectors": item_vectors,
            "sequences": self.sequences_,
            "sequence_events": self.sequence_events_,
        }

    def _restore(self, settings: Mapping[str, Any], arrays: Mapping[str, Any]) -> None:
        self.event_labels_ = list(settings["event_labels"])
        self.user_vectors_ = arrays["user_vectors"]
        self.item_vectors_ = arrays["item_vectors"]
        self.sequences_ = arrays["sequences"]
        self.sequence_events_ = arrays["sequence_events"]


def _chronological(frame: pd.DataFrame) -> pd.DataFrame:
    """Interactions by user, then time (``timestamp``, else ``sequence``), then item."""
    keys = ["user"]
    if "timestamp" in frame.columns:
        keys.append("timestamp")
    elif "sequence" in frame.columns:
        keys.append("sequence")
    keys.append("item")
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def _windows(
    histories: Sequence[tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]], n: int
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.int32]]:
    """Training windows: inputs (items, event codes) and next-item targets, left-padded to
    ``n``. A history is cut from its end into windows of ``n`` targets, so every event but a
    user's first is a target once."""
    items, events, targets = [], [], []
    for history, codes in histories:
        end = len(history)
        while end >= 2:
            start = max(0, end - n - 1)
            window, window_codes = history[start:end], codes[start:end]
            width = len(window) - 1
            row_items = np.zeros(n, np.int32)
            row_events = np.zeros(n, np.int32)
            row_targets = np.zeros(n, np.int32)
            row_items[n - width :] = window[:-1]
            row_events[n - width :] = window_codes[:-1]
            row_targets[n - width :] = window[1:]
            items.append(row_items)
            events.append(row_events)
            targets.append(row_targets)
            end -= n
    if not items:
        raise ModelError("sequential: no user has two events to learn an order from")
    return np.stack(items), np.stack(events), np.stack(targets)
