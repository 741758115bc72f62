"""SavedModel exports that answer with TensorFlow alone (no rekko, no custom Python).

Retrieval (models with user/item embeddings: two-tower, multitask, neural-mf, als, bpr). The
SavedModel
holds the id tables, every known user's vector, the item vectors and each user's training
items, and brute-force top-K:

* ``serving_default(user_ids)`` -> the top :data:`DEFAULT_K` items, training items excluded;
* ``top_k(user_ids, k)`` -> the top ``k`` items, training items excluded;
* ``recommend(user_ids, k, exclude, exclude_seen)`` -> the top ``k`` items, leaving out
  ``exclude`` (item ids, for every user of the batch) and, when ``exclude_seen``, each user's
  training items.

Each returns ``item_ids`` (string, batch x k), ``scores`` (float32, batch x k) and ``known``
(bool per user). Seen items are baked in, so the answers equal ``model.recommend(users, k)``
of the model as it was exported (events added later with ``add_interactions`` are not in the
export: re-export, or pass them in ``exclude``). A user the model does not know gets the
model's fallback vector (two-tower: the user tower with no id, features or history;
neural-mf: the unknown-id embedding; als, bpr: the mean user vector) and ``known`` false.
Where fewer than ``k`` items qualify, the remaining slots hold an empty id and a score of
``-inf``.

What is exported comes from the model's :class:`~rekko.models.contract.ExportContract` only.

Ranking (pointwise models: ranking, neural-mlp, neural-mf): ``serving_default(user_ids,
item_ids)`` -> ``scores`` per pair, equal to ``model.score``; unknown users or items use the
unknown-id embedding and no features.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from rekko.export._common import (
    contract_of,
    external_strings,
    not_exportable,
    prepare_folder,
    write_ids,
    write_manifest,
)
from rekko.models._tf import tf_modules
from rekko.models.base import Recommender
from rekko.models.contract import Embeddings, PairScorer

#: ``k`` of the ``serving_default`` signature of retrieval exports.
DEFAULT_K = 10


def export_savedmodel(model: Recommender, directory: str | Path) -> Path:
    """Write ``model`` as a SavedModel (plus ``manifest.json``) into ``directory``.

    Models with embeddings export the retrieval SavedModel described in the module doc; other
    pair-scoring models (``ranking``, ``neural-mlp``) the ranking SavedModel. Returns the
    folder. An existing export in ``directory`` is replaced.
    """
    contract = contract_of(model, "a SavedModel")
    if contract.embeddings is not None:
        return _export_retrieval(model, contract.embeddings, directory)
    assert contract.pair_scorer is not None  # a contract holds one or both
    return _export_ranking(model, contract.pair_scorer, directory)


def _export_retrieval(model: Recommender, embeddings: Embeddings, directory: str | Path) -> Path:
    tf, _ = tf_modules(model.name)
    user_map, item_map, seen = model.fitted()
    seen = sp.csr_matrix(seen)
    seen.sort_indices()
    module = _retrieval_module(
        tf,
        external_strings(user_map.external_ids),
        embeddings,
        external_strings(item_map.external_ids),
        seen,
    )
    folder = prepare_folder(directory)
    tf.saved_model.save(
        module,
        str(folder),
        signatures={
            "serving_default": module.serve,
            "top_k": module.top_k,
            "recommend": module.recommend,
        },
    )
    files = write_ids(folder, model)
    write_manifest(
        folder,
        model,
        "savedmodel-retrieval",
        {
            "load": "tf.saved_model.load(folder).signatures['serving_default']"
            "(user_ids=tf.constant(['42']))",
            "vocabulary_sizes": {"users": len(user_map), "items": len(item_map)},
            "embedding_dim": embeddings.dim,
            "score": embeddings.score,
            "offset": embeddings.offset,
            "default_k": DEFAULT_K,
            "exclusion": (
                "each user's training items are baked in and excluded when exclude_seen is "
                "true (serving_default: always); 'exclude' removes items for every user"
            ),
            "unknown_users": "scored with the model's fallback vector; 'known' is false",
            "signatures": {
                "serving_default": {
                    "inputs": {"user_ids": "string [batch]"},
                    "outputs": _retrieval_outputs(),
                },
                "top_k": {
                    "inputs": {"user_ids": "string [batch]", "k": "int32 scalar"},
                    "outputs": _retrieval_outputs(),
                },
                "recommend": {
                    "inputs": {
                        "user_ids": "string [batch]",
                        "k": "int32 scalar",
                        "exclude": "string [n] item ids left out for every user (may be empty)",
                        "exclude_seen": "bool scalar",
                    },
                    "outputs": _retrieval_outputs(),
                },
            },
            "files": files,
        },
    )
    return folder


def _retrieval_outputs() -> dict[str, str]:
    return {
        "item_ids": "string [batch, k], best first ('' where fewer than k items qualify)",
        "scores": "float32 [batch, k] (-inf where fewer than k items qualify)",
        "known": "bool [batch]: false for users the model does not know",
    }


def _retrieval_module(
    tf: Any,
    user_ids: list[str],
    embeddings: Embeddings,
    item_ids: list[str],
    seen: sp.csr_matrix,
) -> Any:
    n_items = len(item_ids)
    offset = float(embeddings.offset)

    module_base: Any = tf.Module

    class Retrieval(module_base):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(name="rekko_retrieval")
            self.user_table = _table(tf, user_ids)
            self.item_table = _table(tf, item_ids)
            self.user_vectors = tf.Variable(
                embeddings.user_vectors, trainable=False, name="user_vectors"
            )
            self.fallback = tf.Variable(
                embeddings.fallback, trainable=False, name="fallback_vector"
            )
            self.item_vectors = tf.Variable(
                embeddings.item_vectors, trainable=False, name="item_vectors"
            )
            self.item_ids = tf.Variable(
                tf.constant(item_ids, dtype=tf.string), trainable=False, name="item_ids"
            )
            self.seen_splits = tf.Variable(
                seen.indptr.astype(np.int64), trainable=False, name="seen_row_splits"
            )
            self.seen_items = tf.Variable(
                seen.indices.astype(np.int64), trainable=False, name="seen_items"
            )

        def _recommend(self, user_ids: Any, k: Any, exclude: Any, exclude_seen: Any) -> Any:
            index = self.user_table.lookup(user_ids)
            known = index >= 0
            safe = tf.maximum(index, 0)
            vectors = tf.where(
                known[:, None], tf.gather(self.user_vectors, safe), self.fallback[None, :]
            )
            scores = tf.matmul(vectors, self.item_vectors, transpose_b=True)
            if offset:
                scores = scores + tf.constant(offset, tf.float32)
            negative = tf.constant(-np.inf, tf.float32)
            seen_rows = tf.gather(
                tf.RaggedTensor.from_row_splits(self.seen_items, self.seen_splits), safe
            )
            row_ids = seen_rows.value_rowids()
            keep = tf.logical_and(tf.gather(known, row_ids), exclude_seen)
            positions = tf.stack(
                [tf.boolean_mask(row_ids, keep), tf.boolean_mask(seen_rows.values, keep)], axis=1
            )
            scores = tf.tensor_scatter_nd_update(
                scores, positions, tf.fill(tf.shape(positions)[:1], negative)
            )
            excluded = self.item_table.lookup(exclude)
            excluded = tf.boolean_mask(excluded, excluded >= 0)
            column_hits = tf.scatter_nd(
                excluded[:, None], tf.ones_like(excluded, dtype=tf.int32), [n_items]
            )
            scores = tf.where(column_hits[None, :] > 0, negative, scores)
            best = tf.math.top_k(scores, k=tf.minimum(k, n_items))
            ids = tf.gather(self.item_ids, best.indices)
            ids = tf.where(best.values > negative, ids, tf.constant("", tf.string))
            return {"item_ids": ids, "scores": best.values, "known": known}

        def _serve(self, user_ids: Any) -> Any:
            return self.recommend(
                user_ids,
                tf.constant(DEFAULT_K, tf.int32),
                tf.constant([], tf.string),
                tf.constant(True),
            )

        def _top_k(self, user_ids: Any, k: Any) -> Any:
            return self.recommend(user_ids, k, tf.constant([], tf.string), tf.constant(True))

        # tf.function is untyped, so it wraps the methods here rather than as a decorator.
        recommend = tf.function(
            _recommend,
            input_signature=[
                tf.TensorSpec([None], tf.string, name="user_ids"),
                tf.TensorSpec([], tf.int32, name="k"),
                tf.TensorSpec([None], tf.string, name="exclude"),
                tf.TensorSpec([], tf.bool, name="exclude_seen"),
            ],
        )
        serve = tf.function(
            _serve, input_signature=[tf.TensorSpec([None], tf.string, name="user_ids")]
        )
        top_k = tf.function(
            _top_k,
            input_signature=[
                tf.TensorSpec([None], tf.string, name="user_ids"),
                tf.TensorSpec([], tf.int32, name="k"),
            ],
        )

    return Retrieval()


def _table(tf: Any, keys: list[str]) -> Any:
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(keys, dtype=tf.string), tf.range(len(keys), dtype=tf.int64)
        ),
        default_value=-1,
    )


def export_ranking_savedmodel(model: Recommender, directory: str | Path) -> Path:
    """The pair-scoring network as a SavedModel: ``serving_default(user_ids, item_ids)``.

    Returns ``scores`` (float32 per pair) equal to ``model.score``: a predicted rating for a
    model trained on ratings, else a probability (``ranking``) or a logit (``neural-mlp``,
    ``neural-mf``).
    """
    contract = contract_of(model, "a ranking SavedModel")
    if contract.pair_scorer is None:
        raise not_exportable(model, "a ranking SavedModel")
    return _export_ranking(model, contract.pair_scorer, directory)


def _export_ranking(model: Recommender, scorer: PairScorer, directory: str | Path) -> Path:
    tf, _ = tf_modules(model.name)
    user_map, item_map, _ = model.fitted()
    network = scorer.network.model
    sides = {"user": scorer.users, "item": scorer.items}
    probability = scorer.score == "probability"
    offset = 0.0 if probability else float(scorer.offset)
    user_keys = external_strings(user_map.external_ids)
    item_keys = external_strings(item_map.external_ids)

    module_base: Any = tf.Module

    class Ranking(module_base):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(name="rekko_ranking")
            self.network = network
            self.user_table = _table(tf, user_keys)
            self.item_table = _table(tf, item_keys)
            self.trained = {
                side: tf.Variable(inputs.trained, trainable=False, name=f"{side}_trained")
                for side, inputs in sides.items()
            }
            self.codes = {
                side: {
                    name: tf.Variable(np.asarray(array), trainable=False, name=name)
                    for name, array in inputs.codes.items()
                }
                for side, inputs in sides.items()
            }

        def _serve(self, user_ids: Any, item_ids: Any) -> Any:
            lookups = {
                "user": self.user_table.lookup(user_ids),
                "item": self.item_table.lookup(item_ids),
            }
            inputs: dict[str, Any] = {}
            for side, index in lookups.items():
                known = index >= 0
                safe = tf.maximum(index, 0)
                trained = tf.gather(self.trained[side], safe)
                inputs[sides[side].id_input] = tf.where(
                    tf.logical_and(known, trained), tf.cast(safe + 1, tf.int32), 0
                )
                for name, variable in self.codes[side].items():
                    rows = tf.gather(variable, safe)
                    mask = tf.reshape(known, [-1] + [1] * (len(variable.shape) - 1))
                    inputs[name] = tf.where(mask, rows, tf.zeros_like(rows))
            raw = self.network(inputs, training=False)
            if probability:
                return {"scores": tf.sigmoid(raw)}
            return {"scores": raw + tf.constant(offset, tf.float32)}

        serve = tf.function(
            _serve,
            input_signature=[
                tf.TensorSpec([None], tf.string, name="user_ids"),
                tf.TensorSpec([None], tf.string, name="item_ids"),
            ],
        )

    module = Ranking()
    folder = prepare_folder(directory)
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    files = write_ids(folder, model)
    write_manifest(
        folder,
        model,
        "savedmodel-ranking",
        {
            "load": "tf.saved_model.load(folder).signatures['serving_default']"
            "(user_ids=tf.constant(['42']), item_ids=tf.constant(['7']))",
            "vocabulary_sizes": {
                "users": len(user_map),
                "items": len(item_map),
                **{
                    name: spec["vocabulary_size"]
                    for name, spec in scorer.network.inputs.items()
                    if "vocabulary_size" in spec
                },
            },
            "score": scorer.score,
            "offset": offset,
            "signatures": {
                "serving_default": {
                    "inputs": {"user_ids": "string [batch]", "item_ids": "string [batch]"},
                    "outputs": {"scores": "float32 [batch], one per (user, item) pair"},
                }
            },
            "files": files,
        },
    )
    return folder
