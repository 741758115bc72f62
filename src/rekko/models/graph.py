"""RP3beta: item similarity from three-step random walks on the user-item graph.

A walk from item ``i`` goes to one of its users ``u`` and on to one of ``u``'s items ``j``
(Cooper et al. 2014, "P^3"); ``P(i -> j) = sum_u P(i -> u) P(u -> j)``, with ``P(i -> u)`` the
row-normalised item x user matrix and ``P(u -> j)`` the row-normalised user x item matrix.
RP3beta (Paudel et al. 2017; as in Christoffel et al. 2015 and Dacrema et al. 2019) raises
every transition probability to the power ``alpha`` and divides the arrival at ``j`` by
``degree(j) ** beta``, which demotes blockbusters. Each scored item ``j`` keeps only its
``k_neighbors`` strongest predecessors, as a sparse matrix ``W``; a user's scores are their row
times ``W``, so new events (and new users) count at once without retraining
(``abilities.fold_in``).

Cost: the walk product touches ``sum_u degree(u)^2`` user-item-item triples, and the top-k
step scans ``n_items^2`` dense cells in blocks of :data:`BLOCK_CELLS` (memory stays bounded by
one block; time grows with the square of the catalogue, like item-kNN's). ``W`` holds at most
``n_items * k_neighbors`` entries and scoring a user costs their degree times ``k_neighbors``:
no dense ``n_items x n_items`` matrix, so unlike EASE the catalogue is not bounded by memory.
On MovieLens-100K a fit takes about 0.1 s.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from pydantic import Field

from rekko.data.dataset import Dataset
from rekko.models.base import Abilities, Params, Recommender
from rekko.models.ease import transform_values
from rekko.models.neighbors import csr_from_state, csr_state
from rekko.models.registry import register

#: Dense cells of one block of item rows while keeping the top k (64 MiB of float32).
BLOCK_CELLS = 1 << 24

Values = Literal["binary", "log", "raw"]


class RP3betaParams(Params):
    alpha: float = Field(default=0.8, gt=0, description="Exponent of every transition probability.")
    beta: float = Field(
        default=0.3,
        ge=0,
        description="Popularity penalty: the walk's arrival at item j is divided by "
        "degree(j) ** beta (0: plain P^3).",
    )
    k_neighbors: int = Field(
        default=50, ge=1, description="Strongest predecessors kept per scored item."
    )
    values: Values = Field(
        default="log",
        description="What a user's row holds when scoring: 1 per interaction ('binary'), "
        "log(1 + value) ('log') or the value ('raw'). The walk itself is on the binary graph.",
    )


def row_normalised(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """``matrix`` with each non-empty row divided by its sum (float32 CSR)."""
    sums = np.asarray(matrix.sum(axis=1), dtype=np.float64).ravel()
    scale = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    return sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ matrix, dtype=np.float32)


def rp3beta_walks(matrix: sp.csr_matrix, alpha: float, beta: float, k: int) -> sp.csr_matrix:
    """The sparse item x item matrix ``W`` of walk strengths ``i -> j``.

    Column ``j`` keeps its ``k`` strongest predecessors ``i`` (the neighbourhood of the item
    being scored, as item-kNN keeps): on an inner split of MovieLens-100K this ranks better
    than keeping each history item's ``k`` strongest successors (NDCG@10 0.269 against 0.250
    at ``k=50``).
    """
    binary = transform_values(matrix, "binary")
    user_to_item = row_normalised(binary)
    user_to_item.data **= np.float32(alpha)
    item_to_user = row_normalised(sp.csr_matrix(binary.T))
    item_to_user.data **= np.float32(alpha)
    degree = np.asarray(binary.sum(axis=0), dtype=np.float64).ravel()
    penalty = np.divide(1.0, degree**beta, out=np.zeros_like(degree), where=degree > 0)
    # Rows of W^T: arrivals at j (penalised) from every i, one block of j at a time.
    arrivals = sp.csr_matrix(sp.diags(penalty.astype(np.float32)) @ user_to_item.T)
    departures = sp.csc_matrix(item_to_user.T)

    n_items = matrix.shape[1]
    k = min(k, max(n_items - 1, 1))
    block = max(1, BLOCK_CELLS // max(n_items, 1))
    counts, columns, weights = [], [], []
    for start in range(0, n_items, block):
        stop = min(start + block, n_items)
        walks = np.asarray((arrivals[start:stop] @ departures).toarray(), dtype=np.float32)
        local = np.arange(stop - start)
        walks[local, local + start] = 0.0
        if k < n_items:
            best = np.argpartition(-walks, k - 1, axis=1)[:, :k]
        else:
            best = np.broadcast_to(np.arange(n_items), walks.shape)
        best_values = np.take_along_axis(walks, best, axis=1)
        keep = best_values > 0
        counts.append(keep.sum(axis=1))
        columns.append(best[keep].astype(np.int32))
        weights.append(best_values[keep])
    indptr = np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(np.int32)
    transposed = sp.csr_matrix(
        (np.concatenate(weights), np.concatenate(columns), indptr),
        shape=(n_items, n_items),
        dtype=np.float32,
    )
    walks_matrix = sp.csr_matrix(transposed.T)
    walks_matrix.sort_indices()
    return walks_matrix


@register
class RP3beta(Recommender):
    """Item-item random walks with a popularity penalty (RP3beta)."""

    name = "rp3beta"
    abilities = Abilities(fold_in=True, similar_items=True)
    Params = RP3betaParams
    params: RP3betaParams

    def _fit(self, dataset: Dataset) -> None:
        self._set_similarity(
            rp3beta_walks(
                dataset.matrix, self.params.alpha, self.params.beta, self.params.k_neighbors
            )
        )

    def _set_similarity(self, similarity: sp.csr_matrix) -> None:
        #: Row ``i``: the items a walk from ``i`` reaches, and how strongly.
        self.similarity_ = similarity

    def _score(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        _, _, seen = self._fitted()
        rows = transform_values(seen[users], self.params.values)
        return np.asarray((rows @ self.similarity_).toarray(), dtype=np.float32)

    def _similar(self, items: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return np.asarray(self.similarity_[items].toarray(), dtype=np.float32)

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        return csr_state("similarity", self.similarity_)

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self._set_similarity(csr_from_state("similarity", arrays))
