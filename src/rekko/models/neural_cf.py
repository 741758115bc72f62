"""Neural collaborative filtering over ids, in TensorFlow / Keras 3.

The two models of the e-commerce seed (Retailrocket: matrix factorization vs a neural network),
trained on event values as described in :mod:`rekko.models.ranking`:

* ``neural-mf``: ``bias + user bias + item bias + user . item`` over id embeddings. Its scores
  are a dot product, so it exports to SavedModel / TFLite (:mod:`rekko.export`) and answers
  ``similar_items``;
* ``neural-mlp``: an MLP over the concatenated id embeddings (He et al.'s NCF "MLP"), plus
  biases.

Neither reads features. On implicit data scores are logits (higher is better).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import Field

from rekko.data.dataset import Dataset
from rekko.models.base import Abilities
from rekko.models.contract import Embeddings, ExportContract
from rekko.models.ranking import Parts, PointwiseModel, PointwiseParams
from rekko.models.registry import register


class NeuralMFParams(PointwiseParams):
    embedding_dim: int = Field(default=64, ge=1, le=1024, description="Size of the vectors.")


@register
class NeuralMF(PointwiseModel):
    """Matrix factorization trained with Keras: biases plus a dot product of id embeddings."""

    name = "neural-mf"
    abilities = Abilities(explicit=True, similar_items=True)
    Params = NeuralMFParams
    params: NeuralMFParams

    def _parts(self) -> Parts:
        return Parts(features=False, dot=True, mlp=False, biases=True, hidden=())

    def _after_fit(self, dataset: Dataset) -> None:
        self._cache_embeddings()

    def _restore(self, settings: Mapping[str, Any], arrays: Mapping[str, Any]) -> None:
        super()._restore(settings, arrays)
        self._cache_embeddings()

    def _cache_embeddings(self) -> None:
        """``score = [u, 1, b_u + offset] . [v, b_i, 1]``: one dot product, exportable."""
        networks = self._weights
        users = networks["user"][0]
        items = networks["item"][0]
        user_bias = networks["user_bias"][0][:, 0]
        item_bias = networks["item_bias"][0][:, 0]
        offset = self.offset_ if self.explicit_ else 0.0
        self.user_table_ = np.column_stack([users, np.ones(len(users)), user_bias + offset]).astype(
            np.float32
        )
        self.item_table_ = np.column_stack([items, item_bias, np.ones(len(items))]).astype(
            np.float32
        )
        user_ids = np.where(self.user_trained_, np.arange(len(self.user_trained_)) + 1, 0)
        item_ids = np.where(self.item_trained_, np.arange(len(self.item_trained_)) + 1, 0)
        self.user_vectors_ = self.user_table_[user_ids]
        self.item_vectors_ = self.item_table_[item_ids]

    def _score(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return np.asarray(self.user_vectors_[users] @ self.item_vectors_.T, dtype=np.float32)

    def _factors(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        return self.user_vectors_, self.item_vectors_

    def _predict(
        self, users: npt.NDArray[np.int64], items: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        user_rows = np.where(users >= 0, users + 1, 0)
        item_rows = np.where(items >= 0, items + 1, 0)
        user_rows = np.where((users >= 0) & self.user_trained_[np.maximum(users, 0)], user_rows, 0)
        item_rows = np.where((items >= 0) & self.item_trained_[np.maximum(items, 0)], item_rows, 0)
        raw = np.einsum("ij,ij->i", self.user_table_[user_rows], self.item_table_[item_rows])
        low, high = self.rating_range_
        clipped: npt.NDArray[np.float32] = np.clip(raw, low, high).astype(np.float32)
        return clipped

    def _similar(self, items: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        vectors = self._weights["item"][0][1:]
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return np.asarray(unit[items] @ unit.T, dtype=np.float32)

    def export_contract(self) -> ExportContract:
        """The pair network, plus the embeddings: scores are ``user_vectors @ items.T`` and
        the fallback is the unknown user's row (the id embedding trained by id dropout)."""
        contract = super().export_contract()
        embeddings = Embeddings(
            self.user_vectors_, self.item_vectors_, self.user_table_[0], score=self._score_kind()
        )
        return replace(contract, embeddings=embeddings)


class NeuralMLPParams(PointwiseParams):
    l2: float = Field(default=3e-4, ge=0, description="L2 penalty on embeddings and weights.")
    hidden: tuple[int, ...] = Field(
        default=(64, 32), description="Widths of the MLP's ReLU layers."
    )


@register
class NeuralMLP(PointwiseModel):
    """An MLP over the concatenated user and item id embeddings, plus biases (NCF's MLP)."""

    name = "neural-mlp"
    abilities = Abilities(explicit=True)
    Params = NeuralMLPParams
    params: NeuralMLPParams

    def _parts(self) -> Parts:
        return Parts(
            features=False, dot=False, mlp=True, biases=True, hidden=tuple(self.params.hidden)
        )
