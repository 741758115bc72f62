"""Exact top-K over a batch of dense score rows, shared by every model."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def top_k(
    scores: npt.NDArray[np.floating], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """The ``k`` best columns of each row, best first.

    Entries set to ``-inf`` (excluded items) are never returned: their index is ``-1`` and their
    score ``-inf``. Ties are broken by the lower column index, so results are deterministic.
    """
    if scores.ndim != 2:
        raise ValueError("scores must be a 2-d array (users x items)")
    n_rows, n_cols = scores.shape
    k = min(k, n_cols)
    if k <= 0 or n_rows == 0:
        return np.empty((n_rows, 0), dtype=np.int64), np.empty((n_rows, 0), dtype=np.float32)
    if n_rows == 1:
        indices, best = _top_k_row(scores[0], k)
        return indices[None, :], best[None, :]
    if k < n_cols:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols))
    part_scores = np.take_along_axis(scores, part, axis=1)
    # Sort by score descending, then by column ascending for stable ties.
    order = np.lexsort((part, -part_scores), axis=1)
    indices = np.take_along_axis(part, order, axis=1).astype(np.int64)
    best = np.take_along_axis(part_scores, order, axis=1)
    if k < n_cols:
        # argpartition may pick any of several items tied at the k-th score; make ties
        # resolve to the lowest column like a full sort would.
        threshold = best[:, -1:]
        needs_fix = np.flatnonzero(
            (scores == threshold).sum(axis=1) > (best == threshold).sum(axis=1)
        )
        for row in needs_fix:
            full = np.lexsort((np.arange(n_cols), -scores[row]))[:k]
            indices[row] = full
            best[row] = scores[row, full]
    invalid = ~np.isfinite(best) & (best < 0)
    indices[invalid] = -1
    return indices, best.astype(np.float32)


def _top_k_row(
    row: npt.NDArray[np.floating], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """:func:`top_k` of one row (one request), in a handful of numpy calls: every column
    tied with the k-th best score is a candidate, so ties need no second pass."""
    negated = -row
    if k < len(row):
        kth = np.partition(negated, k - 1)[k - 1]
        candidates = np.flatnonzero(negated <= kth)
        if len(candidates) < k:  # NaN scores compare false: rank them last, as lexsort does
            candidates = np.arange(len(row))
    else:
        candidates = np.arange(len(row))
    order = np.lexsort((candidates, negated[candidates]))[:k]
    indices = candidates[order].astype(np.int64)
    best = row[indices].astype(np.float32)
    indices[best == -np.inf] = -1
    return indices, best
