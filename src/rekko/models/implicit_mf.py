"""Matrix factorisation for implicit feedback, trained by the ``implicit`` library on the CPU.

``als``: implicit ALS (Hu, Koren & Volinsky 2008) with conjugate-gradient steps (Takacs et al.
2011). Every user-item cell counts: observed cells have preference 1 and confidence
``c = 1 + alpha * f(value)``, unobserved cells preference 0 and confidence 1. ``confidence``
chooses ``f``:

* ``linear``: ``f(value) = value``;
* ``log``: ``f(value) = log(1 + value / epsilon)``, which keeps heavy repeat users (play
  counts, summed event weights) from drowning everyone else;
* ``bm25``: the BM25 weight of the cell with items as documents and users as terms
  (``implicit.nearest_neighbours.bm25_weight``'s convention). Its values are about an idf
  (2 to 6), so it wants a smaller ``alpha`` than ``log``.

Defaults (factors 64, regularization 48, alpha 6, log confidence, 10 iterations) were chosen on
MovieLens-100K with two random splits, a temporal split, half the users, half the ratings and
the demo shop; what each knob did is in ``benchmarks/results/classical.md``. The two that
matter are tied: NDCG@10 is good when ``regularization / alpha`` is about 8. Too much
regularisation for the data collapses the factors to a popularity ranking, so when the data
set is much smaller than MovieLens, lower ``regularization`` and ``alpha`` together.

The factorisation is deterministic: every user's (item's) solve is independent of the others,
so ``num_threads`` changes the speed, not the result, and BLAS is kept to one thread during the
fit (its own threads would fight implicit's and could reorder the sums of the Gram matrix).
A user's new events are folded in with an exact least-squares solve against the item factors
(``abilities.fold_in``).

``bpr``: Bayesian personalised ranking (Rendle et al. 2009), implicit's SGD. implicit draws the
negative item of each triple from the interactions, that is in proportion to item popularity,
so the trained scores rank popular items too low; adding ``popularity_correction`` times
``log(1 + item count)`` to every score undoes that sampling bias (the "logQ" correction,
Yi et al. 2019): NDCG@10 on MovieLens-100K rises from 0.29 to 0.43. Training with more than
one thread is lock-free ("Hogwild") and not reproducible, so ``num_threads`` defaults to 1.
BPR has no closed-form user solve, so it does not fold in new events.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from pydantic import Field
from threadpoolctl import threadpool_limits

from rekko.data.dataset import Dataset
from rekko.models.base import Abilities, Params, Recommender
from rekko.models.registry import register

Confidence = Literal["linear", "log", "bm25"]


def _threads(requested: int) -> int:
    """``requested``, or every core this process may use when it is 0."""
    if requested > 0:
        return requested
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cosine_rows(
    factors: npt.NDArray[np.float32], rows: npt.NDArray[np.int64]
) -> npt.NDArray[np.float32]:
    """Cosine of ``factors[rows]`` with every row of ``factors``."""
    norms = np.linalg.norm(factors, axis=1)
    norms[norms == 0] = 1.0
    unit = factors / norms[:, None]
    return np.asarray(unit[rows] @ unit.T, dtype=np.float32)


# -- ALS ----------------------------------------------------------------------------------------
class ALSParams(Params):
    factors: int = Field(default=64, ge=1, description="Number of latent factors.")
    regularization: float = Field(
        default=48.0, ge=0, description="L2 penalty on the factors (keep it near 8 x alpha)."
    )
    alpha: float = Field(
        default=6.0, ge=0, description="Confidence scale: c = 1 + alpha * f(value)."
    )
    confidence: Confidence = Field(
        default="log", description="The function f of the interaction value in the confidence."
    )
    epsilon: float = Field(
        default=1.0, gt=0, description="Scale of the log confidence: log(1 + value / epsilon)."
    )
    bm25_k1: float = Field(default=100.0, gt=0, description="BM25 saturation (bm25 confidence).")
    bm25_b: float = Field(
        default=0.8, ge=0, le=1, description="BM25 length normalisation (bm25 confidence)."
    )
    iterations: int = Field(default=10, ge=1, description="ALS sweeps over users and items.")
    cg_steps: int = Field(
        default=3, ge=1, description="Conjugate-gradient steps per user (item) and sweep."
    )
    seed: int = Field(default=42, description="Seed of the random initial factors.")
    num_threads: int = Field(
        default=0, ge=0, description="Threads for the fit (0: all cores); results do not change."
    )


@register
class ALS(Recommender):
    """Implicit ALS with confidence weighting (log, linear or BM25), folding in new events."""

    name = "als"
    abilities = Abilities(fold_in=True, similar_items=True)
    Params = ALSParams
    params: ALSParams

    def _fit(self, dataset: Dataset) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        matrix = dataset.matrix
        lengths = np.asarray(matrix.sum(axis=0), dtype=np.float64).ravel()
        present = lengths[lengths > 0]
        mean = float(present.mean()) if len(present) else 1.0
        b = self.params.bm25_b
        self.item_length_norm_ = ((1.0 - b) + b * lengths / mean).astype(np.float32)
        confidence = self._confidence(matrix)
        with threadpool_limits(1, user_api="blas"):
            model = AlternatingLeastSquares(
                factors=self.params.factors,
                regularization=self.params.regularization,
                alpha=1.0,
                dtype=np.float32,
                iterations=self.params.iterations,
                calculate_training_loss=False,
                num_threads=_threads(self.params.num_threads),
                random_state=self.params.seed,
            )
            model.cg_steps = self.params.cg_steps
            model.fit(confidence, show_progress=False)
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)

    def _confidence(self, rows: sp.csr_matrix) -> sp.csr_matrix:
        """The confidence matrix ``1 + alpha * f(value)`` of some user rows (observed cells)."""
        out = sp.csr_matrix(rows, dtype=np.float32, copy=True)
        out.eliminate_zeros()
        values = out.data.astype(np.float64)
        kind = self.params.confidence
        if kind == "linear":
            strength = values
        elif kind == "log":
            strength = np.log1p(values / self.params.epsilon)
        else:
            k1 = self.params.bm25_k1
            counts = np.diff(out.indptr)
            idf = np.maximum(np.log(out.shape[1] / (1.0 + counts)), 0.0)
            norm = self.item_length_norm_[out.indices]
            strength = values * (k1 + 1.0) / (k1 * norm + values) * np.repeat(idf, counts)
        out.data = (1.0 + self.params.alpha * strength).astype(np.float32)
        return out

    def _score(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return np.asarray(self.user_factors_[users] @ self.item_factors_.T, dtype=np.float32)

    def _factors(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        return self.user_factors_, self.item_factors_

    def _similar(self, items: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return cosine_rows(self.item_factors_, items)

    def _refresh_users(self, users: npt.NDArray[np.int64]) -> None:
        _, _, seen = self._fitted()
        if seen.shape[0] > len(self.user_factors_):
            grown = np.zeros((seen.shape[0], self.params.factors), dtype=np.float32)
            grown[: len(self.user_factors_)] = self.user_factors_
            self.user_factors_ = grown
        self.user_factors_[users] = self.solve_users(self._confidence(seen[users]))

    def solve_users(self, confidence: sp.csr_matrix) -> npt.NDArray[np.float32]:
        """Exact user factors for rows of a confidence matrix, the item factors held fixed.

        Each row solves ``(Y^T C_u Y + regularization I) x = Y^T C_u p_u``, the user step of
        ALS (written as ``Y^T Y + Y_u^T (C_u - I) Y_u``, so only the user's items are read).
        """
        items = self.item_factors_.astype(np.float64)
        base = items.T @ items + self.params.regularization * np.eye(items.shape[1])
        out = np.zeros((confidence.shape[0], items.shape[1]), dtype=np.float32)
        for row in range(confidence.shape[0]):
            start, stop = confidence.indptr[row], confidence.indptr[row + 1]
            if start == stop:
                continue
            mine = items[confidence.indices[start:stop]]
            weights = confidence.data[start:stop].astype(np.float64)
            system = base + (mine.T * (weights - 1.0)) @ mine
            out[row] = np.linalg.solve(system, mine.T @ weights)
        return out

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        return {
            "user_factors": self.user_factors_,
            "item_factors": self.item_factors_,
            "item_length_norm": self.item_length_norm_,
        }

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.user_factors_ = np.asarray(arrays["user_factors"], dtype=np.float32)
        self.item_factors_ = np.asarray(arrays["item_factors"], dtype=np.float32)
        self.item_length_norm_ = np.asarray(arrays["item_length_norm"], dtype=np.float32)


# -- BPR ----------------------------------------------------------------------------------------
class BPRParams(Params):
    factors: int = Field(default=64, ge=1, description="Number of latent factors.")
    learning_rate: float = Field(default=0.02, gt=0, description="SGD step size.")
    regularization: float = Field(default=0.03, ge=0, description="L2 penalty per SGD update.")
    iterations: int = Field(
        default=150, ge=1, description="Epochs (each samples as many triples as interactions)."
    )
    popularity_correction: float = Field(
        default=1.0,
        description="Weight of log(1 + item count) added to the scores, undoing implicit's "
        "popularity-proportional negative sampling (0: implicit's raw scores).",
    )
    seed: int = Field(default=42, description="Seed of the initial factors and the sampler.")
    num_threads: int = Field(
        default=1,
        ge=0,
        description="Training threads (0: all cores). More than one is faster but lock-free "
        "and so not reproducible.",
    )


@register
class BPR(Recommender):
    """Bayesian personalised ranking (implicit's SGD) with a popularity sampling correction."""

    name = "bpr"
    abilities = Abilities(similar_items=True)
    Params = BPRParams
    params: BPRParams

    def _fit(self, dataset: Dataset) -> None:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        binary = sp.csr_matrix(dataset.matrix, dtype=np.float32, copy=True)
        binary.eliminate_zeros()
        binary.data[:] = 1.0
        binary.sort_indices()
        with threadpool_limits(1, user_api="blas"):
            model = BayesianPersonalizedRanking(
                factors=self.params.factors,
                learning_rate=self.params.learning_rate,
                regularization=self.params.regularization,
                dtype=np.float32,
                iterations=self.params.iterations,
                num_threads=_threads(self.params.num_threads),
                verify_negative_samples=True,
                random_state=self.params.seed,
            )
            model.fit(binary, show_progress=False)
        # implicit appends the item bias as a last factor, with a constant 1 on the user side.
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        counts = np.bincount(binary.indices, minlength=dataset.n_items)
        self.log_popularity_ = np.log1p(counts).astype(np.float32)
        self._vectors()

    def _vectors(self) -> None:
        """User and item vectors whose product is the corrected score (one column each more:
        a constant 1 for users, the weighted log popularity for items)."""
        users, items = self.user_factors_, self.item_factors_
        correction = np.float32(self.params.popularity_correction) * self.log_popularity_
        self._user_vectors = np.hstack([users, np.ones((len(users), 1), dtype=np.float32)])
        self._item_vectors = np.hstack([items, correction[:, None]]).astype(np.float32)

    def _score(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return np.asarray(self._user_vectors[users] @ self._item_vectors.T, dtype=np.float32)

    def _factors(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        return self._user_vectors, self._item_vectors

    def _similar(self, items: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return cosine_rows(self.item_factors_[:, :-1], items)

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        return {
            "user_factors": self.user_factors_,
            "item_factors": self.item_factors_,
            "log_popularity": self.log_popularity_,
        }

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.user_factors_ = np.asarray(arrays["user_factors"], dtype=np.float32)
        self.item_factors_ = np.asarray(arrays["item_factors"], dtype=np.float32)
        self.log_popularity_ = np.asarray(arrays["log_popularity"], dtype=np.float32)
        self._vectors()
