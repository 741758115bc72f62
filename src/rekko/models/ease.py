"""EASE: a shallow linear autoencoder with a closed-form solution (Steck, WWW 2019).

EASE learns an item x item weight matrix ``B`` with a zero diagonal that reconstructs each
user's row from the user's other items: ``min |X - X B|^2 + |Lambda^(1/2) B|^2`` subject to
``diag(B) = 0``. The solution is ``P = (X^T X + Lambda)^-1``, ``B_ij = -P_ij / P_jj``. A user's
scores are their row times ``B``, so new events count at once (``abilities.fold_in``).

Four choices beyond the paper, measured on MovieLens-100K:

* ``values="log"``: ``X`` holds ``log(1 + value)`` rather than 1s (0.449 -> 0.451 NDCG@10 on a
  per-user 80/20 split; it also helps on the demo shop's weighted events and on a temporal
  split);
* ``dropout``: the regulariser adds ``dropout / (1 - dropout)`` times each item's own Gram
  diagonal to ``l2`` (the closed form of training with dropout on the input, as in Steck's
  EDLAE, NeurIPS 2020). It penalises popular items' weights more and flattens the response to
  ``l2``;
* ``user_weight``: the Gram matrix weighs user ``u`` by ``(mean degree / degree(u)) ** g``, so
  that a few heavy users do not set every item's neighbourhood (rows of ``X`` scaled by the
  square root of that weight);
* ``popularity_penalty``: the weights into item ``j`` are divided by ``degree(j) ** b``, which
  moves the last places of a top 10 from the most popular items to better matched ones.

The defaults (``l2=800, dropout=0.5, user_weight=0.5, popularity_penalty=0.1``) were chosen on
an 80/20 split of the peers' ``ml100k-random`` training part only (``benchmarks/peers.py``); on
that split's test part NDCG@10 went from 0.4388 (``l2=500, dropout=0.25`` and neither weight)
to 0.4422, and on ``ml100k-temporal-loo`` from 0.0389 to 0.0398.

The dense ``n_items x n_items`` inverse costs ``O(n_items^3)`` time and ``n_items^2`` memory,
which suits catalogues up to a few tens of thousands of items.

``sparse-ease`` scales past that: each item ``j`` is reconstructed from its ``k_neighbors``
items of highest cosine only, a ridge regression with EASE's regulariser on a ``k x k`` system
(with every item as a neighbour it is EASE's ``B`` exactly). It needs the sparse Gram matrix
(``sum_u degree(u)^2`` work, memory its non-zeros), ``n_items`` Cholesky solves of ``k x k``
(``O(n_items * k^3)``) and keeps ``n_items * k`` weights. On the peers' ``ml100k-random``
split it ranks about as well as EASE (NDCG@10 0.4407 against 0.4422, at the defaults it
shares with EASE); a fit takes about 2 s there.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from pydantic import Field
from scipy import linalg
from scipy.linalg import lapack
from threadpoolctl import threadpool_limits

from rekko.data.dataset import Dataset
from rekko.errors import ModelError
from rekko.models.base import Abilities, Params, Recommender
from rekko.models.neighbors import csr_from_state, csr_state
from rekko.models.registry import register

Values = Literal["binary", "log", "raw"]

#: Largest catalogue EASE accepts: its dense inverse needs 8 * n_items^2 bytes.
MAX_ITEMS = 40_000
#: Dense cells of one block of user rows while summing the Gram matrix (64 MiB).
BLOCK_CELLS = 1 << 24


class EaseParams(Params):
    l2: float = Field(
        default=800.0, gt=0, description="L2 regularisation added to the Gram matrix's diagonal."
    )
    dropout: float = Field(
        default=0.5,
        ge=0,
        lt=1,
        description="Input dropout rate p: adds p / (1 - p) times each item's Gram diagonal to "
        "its regularisation (EDLAE); 0 gives the original EASE.",
    )
    values: Values = Field(
        default="log",
        description="What the interaction matrix holds: 1 per interaction ('binary'), "
        "log(1 + value) ('log') or the value itself ('raw').",
    )
    user_weight: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Exponent g of each user's weight in the Gram matrix, "
        "(mean degree / degree(u)) ** g: above 0, heavy users count less (0: every "
        "interaction counts the same, as in the paper).",
    )
    popularity_penalty: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Exponent b of the popularity penalty: the weights into item j (its "
        "scores and similar-item strengths) are divided by degree(j) ** b (0: none).",
    )


def transform_values(matrix: sp.csr_matrix, values: Values) -> sp.csr_matrix:
    """``matrix`` (float32 CSR) with its values mapped as ``values`` says."""
    out = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    if values == "binary":
        out.data = np.ones_like(out.data)
    elif values == "log":
        out.data = np.log1p(out.data)
    return out


def gram_matrix(matrix: sp.csr_matrix) -> npt.NDArray[np.float64]:
    """``X^T X`` as a dense float64 array, summed over blocks of users to bound memory."""
    n_users, n_items = matrix.shape
    gram = np.zeros((n_items, n_items), dtype=np.float64)
    block = max(1, BLOCK_CELLS // max(n_items, 1))
    for start in range(0, n_users, block):
        rows = matrix[start : start + block]
        gram += sp.csr_matrix(rows.T) @ rows.toarray()
    return gram


def user_weighted(
    matrix: sp.csr_matrix, degrees: npt.NDArray[Any], exponent: float
) -> sp.csr_matrix:
    """``matrix`` with each user's row scaled so that the Gram matrix ``X^T X`` weighs user
    ``u`` by ``(mean degree / degree(u)) ** exponent`` (rows scaled by the square root)."""
    if exponent == 0:
        return matrix
    degrees = np.maximum(np.asarray(degrees, dtype=np.float64), 1.0)
    scale = np.sqrt((degrees.mean() / degrees) ** exponent).astype(np.float32)
    return sp.csr_matrix(sp.diags(scale) @ matrix, dtype=np.float32)


def popularity_scaled(
    weights: npt.NDArray[np.float32] | sp.csr_matrix, degrees: npt.NDArray[Any], exponent: float
) -> Any:
    """``weights`` with column ``j`` divided by ``degree(j) ** exponent`` (at least 1)."""
    if exponent == 0:
        return weights
    scale = (np.maximum(np.asarray(degrees, dtype=np.float64), 1.0) ** -exponent).astype(np.float32)
    if sp.issparse(weights):
        return sp.csr_matrix(weights @ sp.diags(scale), dtype=np.float32)
    return np.asarray(weights * scale[None, :], dtype=np.float32)


def _degrees(matrix: sp.csr_matrix) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Users' and items' numbers of interactions (stored entries) in ``matrix``."""
    users = np.diff(matrix.indptr).astype(np.int64)
    items = np.bincount(matrix.indices, minlength=matrix.shape[1]).astype(np.int64)
    return users, items


def inverse_spd(matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Inverse of a symmetric positive definite matrix, via Cholesky.

    Tries single precision first (half the time, relative error ~1e-7 for a well regularised
    Gram matrix) and falls back to double precision if the factorisation fails.
    """
    for dtype, factor, invert in (
        (np.float32, lapack.spotrf, lapack.spotri),
        (np.float64, lapack.dpotrf, lapack.dpotri),
    ):
        upper, info = factor(matrix.astype(dtype), lower=False, overwrite_a=True)
        if info == 0:
            inverse, info = invert(upper, lower=False, overwrite_c=True)
        if info == 0:
            inverse = np.triu(inverse)
            inverse += np.triu(inverse, 1).T
            return np.asarray(inverse, dtype=np.float64)
    raise ModelError("ease: the regularised Gram matrix is not positive definite; raise l2")


@register
class EASE(Recommender):
    """Embarrassingly shallow autoencoder (closed form), with optional EDLAE dropout."""

    name = "ease"
    abilities = Abilities(fold_in=True, similar_items=True)
    Params = EaseParams
    params: EaseParams

    def _fit(self, dataset: Dataset) -> None:
        if dataset.n_items > MAX_ITEMS:
            raise ModelError(
                f"ease: {dataset.n_items} items is more than the {MAX_ITEMS} its dense "
                "item x item inverse can hold; use item-knn or als"
            )
        user_degrees, item_degrees = _degrees(dataset.matrix)
        matrix = transform_values(dataset.matrix, self.params.values)
        gram = gram_matrix(user_weighted(matrix, user_degrees, self.params.user_weight))
        diagonal = np.diag(gram).copy()
        dropout = self.params.dropout
        gram[np.diag_indices_from(gram)] += self.params.l2 + dropout / (1.0 - dropout) * diagonal
        inverse = inverse_spd(gram)
        weights = inverse / -np.diag(inverse)[None, :]
        np.fill_diagonal(weights, 0.0)
        self.weights_ = popularity_scaled(
            weights.astype(np.float32), item_degrees, self.params.popularity_penalty
        )

    def _score(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        _, _, seen = self._fitted()
        if len(users) == 1:  # one request: its row built from the index arrays
            start, stop = seen.indptr[users[0]], seen.indptr[users[0] + 1]
            values = np.asarray(seen.data[start:stop], dtype=np.float32)
            if self.params.values == "binary":
                values = np.ones_like(values)
            elif self.params.values == "log":
                values = np.log1p(values)
            row = sp.csr_matrix(
                (values, seen.indices[start:stop], np.asarray([0, stop - start])),
                shape=(1, seen.shape[1]),
            )
            return np.asarray(row @ self.weights_, dtype=np.float32)
        rows = transform_values(seen[users], self.params.values)
        return np.asarray(rows @ self.weights_, dtype=np.float32)

    def _similar(self, items: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return np.asarray(self.weights_[items], dtype=np.float32)

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        return {"weights": self.weights_}

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.weights_ = np.asarray(arrays["weights"], dtype=np.float32)


# -- sparse EASE --------------------------------------------------------------------------------
class SparseEaseParams(EaseParams):
    k_neighbors: int = Field(
        default=200,
        ge=1,
        description="Items each item is reconstructed from: its k most similar by the cosine of "
        "their columns (all items gives EASE itself).",
    )


#: Dense Gram cells of one batch of items' neighbourhoods while their systems are built.
SOLVE_CELLS = 1 << 22


def neighbourhoods(gram: sp.csr_matrix, k: int) -> list[npt.NDArray[np.int64]]:
    """Each item's ``k`` most similar other items by the cosine of the Gram matrix (co-occurring
    items only), as sorted index arrays."""
    diagonal = gram.diagonal().astype(np.float64)
    norms = np.sqrt(np.maximum(diagonal, 1e-12))
    chosen = []
    for item in range(gram.shape[0]):
        start, stop = gram.indptr[item], gram.indptr[item + 1]
        others = gram.indices[start:stop].astype(np.int64)
        cosine = gram.data[start:stop] / (norms[item] * norms[others])
        keep = (others != item) & (cosine > 0)
        others, cosine = others[keep], cosine[keep]
        if len(others) > k:
            best = np.argpartition(-cosine, k - 1)[:k]
            others = np.sort(others[best])
        chosen.append(others)
    return chosen


def sparse_ease_weights(matrix: sp.csr_matrix, l2: float, dropout: float, k: int) -> sp.csr_matrix:
    """Sparse ``B``: column ``j`` is the ridge regression of item ``j`` on its ``k`` neighbours.

    With every item as a neighbour this is EASE's ``B`` exactly (the zero-diagonal constraint of
    EASE is the same as leaving ``j`` out of its own regression).
    """
    gram = sp.csr_matrix(matrix.T @ matrix, dtype=np.float64)
    gram.sort_indices()
    diagonal = gram.diagonal()
    regulariser = l2 + dropout / (1.0 - dropout) * diagonal
    groups = neighbourhoods(gram, k)
    n_items = matrix.shape[1]
    # A batch of items shares one dense block of the Gram matrix over their neighbourhoods
    # (the whole Gram matrix at once when it fits).
    side = math.isqrt(SOLVE_CELLS)
    batch = n_items if n_items <= side else max(1, side // k)
    rows, columns, values = [], [], []
    # One thread per small solve: threaded LAPACK on k x k systems only contends for cores.
    with threadpool_limits(1, user_api="blas"):
        for start in range(0, n_items, batch):
            items = np.arange(start, min(start + batch, n_items))
            union = np.unique(np.concatenate([items, *(groups[item] for item in items)]))
            dense = gram[union][:, union].toarray()
            for item in items:
                group = groups[item]
                if len(group) == 0:
                    continue
                where = np.searchsorted(union, group)
                system = dense[np.ix_(where, where)]
                system[np.diag_indices_from(system)] += regulariser[group]
                target = dense[where, np.searchsorted(union, item)]
                rows.append(group)
                columns.append(np.full(len(group), item, dtype=np.int64))
                values.append(linalg.solve(system, target, assume_a="pos", check_finite=False))
    if not rows:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    return sp.csr_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(columns))),
        shape=(n_items, n_items),
        dtype=np.float32,
    )


@register
class SparseEASE(Recommender):
    """EASE restricted to each item's nearest items: sparse weights, no catalogue limit."""

    name = "sparse-ease"
    abilities = Abilities(fold_in=True, similar_items=True)
    Params = SparseEaseParams
    params: SparseEaseParams

    def _fit(self, dataset: Dataset) -> None:
        user_degrees, item_degrees = _degrees(dataset.matrix)
        matrix = transform_values(dataset.matrix, self.params.values)
        matrix = user_weighted(matrix, user_degrees, self.params.user_weight)
        weights = sparse_ease_weights(
            matrix, self.params.l2, self.params.dropout, self.params.k_neighbors
        )
        self.weights_ = popularity_scaled(weights, item_degrees, self.params.popularity_penalty)

    def _score(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        _, _, seen = self._fitted()
        rows = transform_values(seen[users], self.params.values)
        return np.asarray((rows @ self.weights_).toarray(), dtype=np.float32)

    def _similar(self, items: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return np.asarray(self.weights_[items].toarray(), dtype=np.float32)

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        return csr_state("weights", self.weights_)

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.weights_ = csr_from_state("weights", arrays)
