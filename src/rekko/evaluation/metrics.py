"""Evaluation metrics: ranking accuracy, rating error and beyond-accuracy measures.

Everything here is a pure numpy/scipy function over integer indices (no ids, no pandas).

Ranking metrics work on a *hits* matrix computed once per evaluation by :func:`hit_matrix`:
``hits[u, r]`` says whether the item a model put at rank ``r`` for user ``u`` is one of that
user's held-out (relevant) items. Every ranking metric then reads only the first ``k`` columns,
so one top-``K`` recommendation call serves every cut-off ``k <= K``.

Conventions shared by all functions:

* ``recommended`` is ``(n_users, K)`` integer item indices, best first; ``-1`` pads a list that
  has fewer than ``K`` items. Padding is never a hit and never counts as a recommended item.
* Rows with no relevant items (or no valid recommended items, for beyond-accuracy metrics)
  give 0 instead of dividing by zero; callers are expected to drop such users beforehand.
* Per-user functions return ``(n_users,)`` float64 arrays so callers can average, weight or
  bootstrap them; the beyond-accuracy functions return a single float.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

__all__ = [
    "RANKING_METRICS",
    "RankingMetric",
    "average_precision_at_k",
    "catalog_coverage",
    "count_relevant",
    "hit_matrix",
    "hit_rate_at_k",
    "intra_list_diversity",
    "mae",
    "ndcg_at_k",
    "novelty",
    "popularity_bias",
    "precision_at_k",
    "recall_at_k",
    "reciprocal_rank_at_k",
    "rmse",
    "top_k_categorical_accuracy",
    "truncated_average_precision_at_k",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: Signature of a per-user ranking metric: ``(hits, n_relevant, k) -> (n_users,) float64``.
RankingMetric = Callable[[BoolArray, IntArray, int], FloatArray]


# --------------------------------------------------------------------------- validation helpers


def _check_k(k: int, n_columns: int, what: str = "recommendation lists") -> None:
    """Reject a cut-off that is not an int in ``1..n_columns`` (a silent clip would mislead)."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if k > n_columns:
        raise ValueError(
            f"k={k} is larger than the {n_columns} columns of the {what}; "
            f"ask the model for at least k recommendations per user"
        )


def _check_recommended(recommended: npt.NDArray[Any], n_items: int) -> IntArray:
    """Return ``recommended`` as a 2-D int64 array after checking every index is valid."""
    rec = np.asarray(recommended)
    if rec.ndim != 2:
        raise ValueError(f"recommended must be 2-D (n_users, K), got shape {rec.shape}")
    if rec.size and not np.issubdtype(rec.dtype, np.integer):
        raise ValueError(f"recommended must hold integer item indices, got dtype {rec.dtype}")
    rec = rec.astype(np.int64, copy=False)
    if rec.size:
        low, high = int(rec.min()), int(rec.max())
        if low < -1:
            raise ValueError(f"recommended holds {low}; only -1 may be used as padding")
        if high >= n_items:
            raise ValueError(
                f"recommended holds item index {high}, but there are only {n_items} items"
            )
    return rec


def _check_hits(
    hits: BoolArray, n_relevant: IntArray, k: int
) -> tuple[BoolArray, IntArray, IntArray]:
    """Validate ranking-metric inputs; return ``(hits[:, :k], n_relevant, hits@k per user)``."""
    h = np.asarray(hits)
    if h.ndim != 2:
        raise ValueError(f"hits must be 2-D (n_users, K), got shape {h.shape}")
    if h.dtype != np.bool_:
        raise ValueError(f"hits must be a bool array (see hit_matrix), got dtype {h.dtype}")
    n_rel = np.asarray(n_relevant)
    if n_rel.shape != (h.shape[0],):
        raise ValueError(
            f"n_relevant must have shape ({h.shape[0]},) to match hits, got {n_rel.shape}"
        )
    if n_rel.size and not np.issubdtype(n_rel.dtype, np.integer):
        raise ValueError(f"n_relevant must hold integer counts, got dtype {n_rel.dtype}")
    n_rel = n_rel.astype(np.int64, copy=False)
    if n_rel.size and int(n_rel.min()) < 0:
        raise ValueError("n_relevant must not be negative")
    _check_k(k, h.shape[1], what="hits matrix")
    hk = h[:, :k]
    n_hits = hk.sum(axis=1, dtype=np.int64)
    if np.any(n_hits > n_rel):
        bad = int(np.flatnonzero(n_hits > n_rel)[0])
        raise ValueError(
            f"row {bad} has {int(n_hits[bad])} hits but only {int(n_rel[bad])} relevant items; "
            f"hits and n_relevant do not come from the same data"
        )
    return hk, n_rel, n_hits


def _safe_divide(numerator: npt.NDArray[Any], denominator: npt.NDArray[Any]) -> FloatArray:
    """Elementwise ``numerator / denominator`` with 0 where the denominator is 0."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _discounts(k: int) -> FloatArray:
    """``1 / log2(r + 2)`` for ranks ``r = 0..k-1``: the DCG position discount."""
    return np.asarray(1.0 / np.log2(np.arange(k, dtype=np.float64) + 2.0), dtype=np.float64)


# --------------------------------------------------------------------------- hits


def count_relevant(relevant: Any) -> IntArray:
    """Relevant items per user: nonzero entries per row (stored explicit zeros do not count).

    Same rule as :func:`hit_matrix`, so ``hits`` and ``n_relevant`` always agree. Equals
    ``relevant.getnnz(axis=1)`` for a matrix without stored zeros.
    """
    rel = sp.csr_matrix(relevant)
    if not rel.has_canonical_format:
        rel = rel.copy()
        rel.sum_duplicates()
    rows = np.repeat(np.arange(rel.shape[0], dtype=np.int64), np.diff(rel.indptr))
    counts = np.bincount(rows[rel.data != 0], minlength=rel.shape[0])
    return np.asarray(counts, dtype=np.int64)


def hit_matrix(recommended: IntArray, relevant: Any) -> BoolArray:
    """Mark which recommended items are relevant: the input of every ranking metric.

    ``recommended`` is ``(n_users, K)`` item indices, best first, ``-1`` = padding.
    ``relevant`` is a sparse ``(n_users, n_items)`` matrix; a nonzero entry marks a relevant
    (held-out) item of that row's user. Returns ``(n_users, K)`` bool.

    Padding is never a hit. An item repeated in one list is a hit only at its first position,
    so no metric can count one relevant item twice (which would push recall above 1).

    Vectorised: every (user, item) pair becomes the int64 key ``user * n_items + item`` and is
    looked up by binary search in the sorted keys of ``relevant``; no Python loop over users.
    """
    rel = sp.csr_matrix(relevant)
    n_users, n_items = rel.shape
    rec = _check_recommended(recommended, n_items)
    if rec.shape[0] != n_users:
        raise ValueError(
            f"recommended has {rec.shape[0]} rows but relevant has {n_users}; "
            f"both must list the same users in the same order"
        )
    hits = np.zeros(rec.shape, dtype=np.bool_)
    if rec.size == 0:
        return hits
    if not rel.has_canonical_format:  # canonical CSR = sorted, unique keys below
        rel = rel.copy()
        rel.sum_duplicates()
    nonzero = rel.data != 0
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(rel.indptr))
    keys = rows[nonzero] * np.int64(n_items) + rel.indices[nonzero].astype(np.int64)
    if keys.size == 0:
        return hits

    user_base = np.arange(n_users, dtype=np.int64)[:, None] * np.int64(n_items)
    query = (user_base + rec).ravel()
    query[rec.ravel() < 0] = -1  # padding would alias the previous user's last item; keys >= 0
    pos = np.searchsorted(keys, query)
    np.minimum(pos, keys.size - 1, out=pos)
    found = np.flatnonzero(keys[pos] == query)

    # Keep the first occurrence of each (user, item) hit; flat order is row-major = rank order.
    _, first = np.unique(query[found], return_index=True)
    hits.ravel()[found[first]] = True
    return hits


# --------------------------------------------------------------------------- ranking metrics


def precision_at_k(hits: BoolArray, n_relevant: IntArray, k: int) -> FloatArray:
    """Precision@k per user: the share of the first k slots holding a relevant item.

    Divides by k even when a list is shorter (padding counts as a miss), the usual definition.
    """
    _, _, n_hits = _check_hits(hits, n_relevant, k)
    return np.asarray(n_hits / float(k), dtype=np.float64)


def recall_at_k(hits: BoolArray, n_relevant: IntArray, k: int) -> FloatArray:
    """Recall@k per user: the share of the user's relevant items found in the first k slots.

    Not capped at ``min(n_relevant, k)``: with more relevant items than k, 1 is unreachable.
    """
    _, n_rel, n_hits = _check_hits(hits, n_relevant, k)
    return _safe_divide(n_hits, n_rel)


def ndcg_at_k(hits: BoolArray, n_relevant: IntArray, k: int) -> FloatArray:
    """NDCG@k per user with binary gains: DCG of the list over DCG of a perfect list.

    ``DCG = sum_{r<k} hit_r / log2(r + 2)``; the ideal list puts ``min(n_relevant, k)``
    relevant items first, so a perfect ranking scores exactly 1.
    """
    hk, n_rel, _ = _check_hits(hits, n_relevant, k)
    disc = _discounts(k)
    dcg = hk.astype(np.float64) @ disc
    ideal_cumulative = np.concatenate(([0.0], np.cumsum(disc)))
    idcg = ideal_cumulative[np.minimum(n_rel, k)]
    return _safe_divide(dcg, idcg)


def _precision_sums(hits: BoolArray, n_relevant: IntArray, k: int) -> tuple[FloatArray, IntArray]:
    """``sum_{r<k} precision@(r+1) * hit_r`` per user, and the users' relevant counts."""
    hk, n_rel, _ = _check_hits(hits, n_relevant, k)
    ranks = np.arange(1, k + 1, dtype=np.float64)
    precision_at_rank = np.cumsum(hk, axis=1, dtype=np.float64) / ranks
    return np.where(hk, precision_at_rank, 0.0).sum(axis=1), n_rel


def average_precision_at_k(hits: BoolArray, n_relevant: IntArray, k: int) -> FloatArray:
    """Average precision@k per user (its mean over users is MAP@k), as trec_eval defines it.

    ``sum_{r<k} precision@(r+1) * hit_r / n_relevant``: relevant items beyond the cut-off count
    as missed, so with more relevant items than ``k`` a perfect list scores ``k / n_relevant``.
    ranx, trec_eval and RecTools divide the same way.
    """
    total, n_rel = _precision_sums(hits, n_relevant, k)
    return _safe_divide(total, n_rel)


def truncated_average_precision_at_k(hits: BoolArray, n_relevant: IntArray, k: int) -> FloatArray:
    """Average precision@k divided by ``min(n_relevant, k)``, so a perfect top-k list scores 1.

    The definition of some recommender papers and of the peer benchmark's ``score.py``
    (``map@10``), and rekko's ``map@k`` until the Unreleased version. Reported as
    ``map_truncated@k``.
    """
    total, n_rel = _precision_sums(hits, n_relevant, k)
    return _safe_divide(total, np.minimum(n_rel, k))


def reciprocal_rank_at_k(hits: BoolArray, n_relevant: IntArray, k: int) -> FloatArray:
    """Reciprocal rank per user: ``1 / (1-based rank of the first hit)``, 0 without a hit.

    Its mean over users is MRR@k.
    """
    hk, _, _ = _check_hits(hits, n_relevant, k)
    any_hit = hk.any(axis=1)
    first = np.argmax(hk, axis=1).astype(np.float64)
    return np.where(any_hit, 1.0 / (first + 1.0), 0.0).astype(np.float64)


def hit_rate_at_k(hits: BoolArray, n_relevant: IntArray, k: int) -> FloatArray:
    """Hit rate per user: 1.0 if any of the first k items is relevant, else 0.0."""
    hk, _, _ = _check_hits(hits, n_relevant, k)
    return np.asarray(hk.any(axis=1), dtype=np.float64)


def top_k_categorical_accuracy(hits: BoolArray, n_relevant: IntArray, k: int) -> float:
    """Micro-averaged recall@k: total hits@k over total relevant items, as one float.

    This is what TensorFlow Recommenders' ``FactorizedTopK`` metric reports: the fraction of
    all (user, relevant item) pairs whose item lands in the user's top k. Users with many
    relevant items weigh more than in the per-user mean of :func:`recall_at_k`.
    """
    _, n_rel, n_hits = _check_hits(hits, n_relevant, k)
    total = int(n_rel.sum())
    return float(n_hits.sum()) / total if total else 0.0


RANKING_METRICS: dict[str, RankingMetric] = {
    "precision": precision_at_k,
    "recall": recall_at_k,
    "ndcg": ndcg_at_k,
    "map": average_precision_at_k,
    "map_truncated": truncated_average_precision_at_k,
    "mrr": reciprocal_rank_at_k,
    "hit_rate": hit_rate_at_k,
}


# --------------------------------------------------------------------------- rating metrics


def _check_ratings(predicted: npt.ArrayLike, actual: npt.ArrayLike) -> FloatArray:
    """Return ``predicted - actual`` as float64 after checking shapes and finiteness."""
    p = np.asarray(predicted, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if p.shape != a.shape:
        raise ValueError(f"predicted has shape {p.shape} but actual has shape {a.shape}")
    if p.size == 0:
        raise ValueError("cannot compute a rating error over no ratings")
    for name, arr in (("predicted", p), ("actual", a)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} holds NaN or infinite values")
    return np.asarray(p - a, dtype=np.float64)


def rmse(predicted: npt.ArrayLike, actual: npt.ArrayLike) -> float:
    """Root mean squared error of rating predictions (penalises large errors more than MAE)."""
    err = _check_ratings(predicted, actual)
    return float(np.sqrt(np.mean(np.square(err))))


def mae(predicted: npt.ArrayLike, actual: npt.ArrayLike) -> float:
    """Mean absolute error of rating predictions."""
    err = _check_ratings(predicted, actual)
    return float(np.mean(np.abs(err)))


# --------------------------------------------------------------------------- beyond accuracy


def _top_k_items(recommended: IntArray, n_items: int, k: int) -> tuple[IntArray, BoolArray]:
    """First k columns with padding replaced by item 0, plus the mask of real items."""
    rec = _check_recommended(recommended, n_items)
    _check_k(k, rec.shape[1])
    top = rec[:, :k]
    valid = top >= 0
    return np.where(valid, top, 0).astype(np.int64), valid


def _mean_over_lists(values: FloatArray, valid: BoolArray) -> float:
    """Mean over users (with at least one real item) of each user's mean of ``values``."""
    counts = valid.sum(axis=1)
    sums = np.where(valid, values, 0.0).sum(axis=1)
    has_items = counts > 0
    if not np.any(has_items):
        return 0.0
    return float(np.mean(sums[has_items] / counts[has_items]))


def catalog_coverage(recommended: IntArray, n_items: int, k: int) -> float:
    """Share of the catalogue recommended to at least one user in the first k slots.

    Low coverage means the model keeps showing the same few items to everyone.
    """
    if n_items < 1:
        raise ValueError(f"n_items must be at least 1, got {n_items}")
    top, valid = _top_k_items(recommended, n_items, k)
    seen = np.zeros(n_items, dtype=np.bool_)
    seen[top[valid]] = True
    return float(np.count_nonzero(seen)) / n_items


def intra_list_diversity(recommended: IntArray, item_categories: Any, k: int) -> float:
    """Mean pairwise category dissimilarity within each list, averaged over users.

    For each list (first k real items) this is the mean over unordered pairs of
    ``1 - cosine(categories_i, categories_j)``; an item without categories has similarity 0 to
    everything. Users with fewer than 2 items are skipped (0.0 if none are left).

    Vectorised with ``sum_{i<j} x_i . x_j = (|sum_i x_i|^2 - sum_i |x_i|^2) / 2`` over the
    unit-normalised category vectors: one sparse product for all users, no pairwise loop.
    """
    cats = sp.csr_matrix(item_categories, dtype=np.float64)
    n_items = cats.shape[0]
    top, valid = _top_k_items(recommended, n_items, k)
    norms = np.sqrt(np.asarray(cats.multiply(cats).sum(axis=1), dtype=np.float64).ravel())
    inverse = _safe_divide(np.ones_like(norms), norms)
    unit = sp.csr_matrix(sp.diags(inverse) @ cats)

    n_users = top.shape[0]
    rows = np.repeat(np.arange(n_users, dtype=np.int64), top.shape[1])[valid.ravel()]
    picks = sp.csr_matrix(
        (np.ones(rows.size, dtype=np.float64), (rows, top[valid])), shape=(n_users, n_items)
    )  # duplicate (user, item) entries are summed: a repeated item counts twice, as listed
    summed = picks @ unit
    squared_sum = np.asarray(summed.multiply(summed).sum(axis=1), dtype=np.float64).ravel()
    has_categories = (norms > 0)[top] & valid
    self_terms = has_categories.sum(axis=1).astype(np.float64)
    pair_similarity = (squared_sum - self_terms) / 2.0

    m = valid.sum(axis=1).astype(np.float64)
    eligible = m >= 2
    if not np.any(eligible):
        return 0.0
    n_pairs = m[eligible] * (m[eligible] - 1.0) / 2.0
    diversity = 1.0 - pair_similarity[eligible] / n_pairs
    return float(np.mean(np.clip(diversity, 0.0, 1.0)))


def _check_popularity(item_popularity: npt.ArrayLike) -> FloatArray:
    """Return item popularity as a 1-D float64 array of non-negative counts."""
    pop = np.asarray(item_popularity, dtype=np.float64)
    if pop.ndim != 1:
        raise ValueError(f"item_popularity must be 1-D (n_items,), got shape {pop.shape}")
    if pop.size and (not np.all(np.isfinite(pop)) or float(pop.min()) < 0):
        raise ValueError("item_popularity must hold finite, non-negative counts")
    return pop


def novelty(recommended: IntArray, item_popularity: npt.ArrayLike, n_users: int, k: int) -> float:
    """Mean self-information ``-log2(p_i)`` of recommended items, averaged over users.

    ``p_i = max(popularity_i, 1) / n_users`` is the share of training users who interacted
    with item i (an unseen item counts as 1 user, so the value stays finite). Higher means
    the model recommends less obvious items. Users with no real items are skipped.
    """
    pop = _check_popularity(item_popularity)
    if n_users < 1:
        raise ValueError(f"n_users must be at least 1, got {n_users}")
    if pop.size and float(pop.max()) > n_users:
        raise ValueError(
            f"item_popularity holds {float(pop.max()):g} users, more than n_users={n_users}; "
            f"popularity must count distinct training users"
        )
    top, valid = _top_k_items(recommended, pop.size, k)
    self_information = -np.log2(np.maximum(pop, 1.0) / float(n_users))
    return _mean_over_lists(np.asarray(self_information[top], dtype=np.float64), valid)


def popularity_bias(recommended: IntArray, item_popularity: npt.ArrayLike, k: int) -> float:
    """Average recommendation popularity (ARP): mean over users of their items' mean popularity.

    Compare with the catalogue's mean popularity to see how strongly a model favours hits.
    Users with no real items are skipped.
    """
    pop = _check_popularity(item_popularity)
    top, valid = _top_k_items(recommended, pop.size, k)
    return _mean_over_lists(np.asarray(pop[top], dtype=np.float64), valid)
