"""Approximate top-K for factor models: an HNSW graph (faiss) over item vectors.

Models whose scores are ``user_vectors @ item_vectors.T`` declare those arrays through
:meth:`rekko.models.base.Recommender._factors`; above :data:`ANN_MIN_ITEMS` items (or always,
with ``model.index_mode = "ann"``) ``recommend`` then searches this index instead of scoring
every item. Results stay correct where it matters:

* exclusions, candidates and attribute filters are applied exactly: the index is asked for
  more than ``k`` items (enough to cover each user's seen items and the share of the
  catalogue the filter allows) and the survivors are kept;
* a user left with fewer than ``k`` survivors while more items qualify, or whose over-fetch
  would be a large part of the catalogue (a long history, a narrow filter), is ranked by brute
  force instead. Only the ranking of the qualifying items is approximate: recall@10 against
  brute force is about 0.98 at the defaults on random 64-dimensional factors of 20k to 1M
  items (``tests/index/test_ann.py``, ``benchmarks/scale.md``); raise ``ef_search`` for more.

The graph is built on first use (seconds for 100k items, minutes for millions: see
``benchmarks/scale.md``) and kept with the model until its item vectors change. faiss is an
optional dependency (the ``ann`` extra); without it ``"auto"`` falls back to brute force and
``"ann"`` raises a clear error. Building uses all cores, so two builds may give graphs that
differ in rare near-ties; exact mode is reproducible.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from rekko.errors import ModelError

logger = logging.getLogger(__name__)

IndexMode = Literal["auto", "exact", "ann"]
INDEX_MODES: tuple[str, ...] = ("auto", "exact", "ann")
#: Catalogue size from which ``index_mode="auto"`` uses the approximate index.
ANN_MIN_ITEMS = 50_000
#: Users whose over-fetch would exceed this many items, or this share of the catalogue, are
#: ranked by brute force (a graph search that deep costs as much as scoring everything).
MAX_FETCH = 2_048
MAX_FETCH_SHARE = 0.05

TopK = tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]
#: Exact ranking of a subset of a batch: ``(rows of the batch, k) -> (indices, scores)``.
ExactTopK = Callable[[npt.NDArray[np.int64], int], TopK]


@dataclass(frozen=True)
class HNSWSettings:
    """Graph settings; the defaults reach recall@10 ~0.98 on random 64-d vectors (1M items:
    ef_search 128 -> 0.935, 256 -> 0.981, 512 -> 0.993 at 1.0, 1.7, 1.9 ms p99 per query).

    Attributes:
        neighbors: links per node (HNSW's ``M``): more is better recall, more memory
            (``neighbors * 8`` bytes per item) and a slower build.
        ef_construction: candidates kept while linking a new item (build quality).
        ef_search: candidates kept while searching (raised to the over-fetch when larger).
        threads: build and batch-search threads (``None``: faiss's default, all cores).
    """

    neighbors: int = 32
    ef_construction: int = 80
    ef_search: int = 256
    threads: int | None = None


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise ModelError(
            "the approximate index needs faiss, which is not installed: pip install "
            "'rekko[ann]' (or set index_mode='exact')"
        ) from None
    return faiss


def ann_available() -> bool:
    """Whether faiss can be imported."""
    try:
        _faiss()
    except ModelError:
        return False
    return True


def wants_ann(mode: str, n_items: int) -> bool:
    """Whether ``mode`` means the approximate index for a catalogue of ``n_items``."""
    if mode not in INDEX_MODES:
        raise ModelError(f"index_mode must be one of {', '.join(INDEX_MODES)}, got {mode!r}")
    if mode == "auto":
        return n_items >= ANN_MIN_ITEMS and ann_available()
    return mode == "ann"


class ANNIndex:
    """An inner-product HNSW graph over ``item_vectors`` (kept by reference, not copied)."""

    def __init__(
        self, item_vectors: npt.NDArray[np.float32], settings: HNSWSettings | None = None
    ) -> None:
        faiss = _faiss()
        self.settings = settings or HNSWSettings()
        self.item_vectors = item_vectors
        vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] == 0:
            raise ModelError("the approximate index needs a non-empty (items x dims) array")
        started = time.perf_counter()
        if self.settings.threads is not None:
            faiss.omp_set_num_threads(self.settings.threads)
        graph = faiss.IndexHNSWFlat(
            vectors.shape[1], self.settings.neighbors, faiss.METRIC_INNER_PRODUCT
        )
        graph.hnsw.efConstruction = self.settings.ef_construction
        graph.add(vectors)
        self._graph = graph
        self.build_seconds = time.perf_counter() - started
        logger.info(
            "built an HNSW index over %d items x %d dims in %.1f s",
            vectors.shape[0],
            vectors.shape[1],
            self.build_seconds,
        )

    @property
    def n_items(self) -> int:
        return int(self._graph.ntotal)

    def search(self, queries: npt.NDArray[np.floating], k: int) -> TopK:
        """Approximate best ``k`` items per query row: indices (-1 padded) and scores."""
        faiss = _faiss()
        k = min(k, self.n_items)
        rows = np.ascontiguousarray(queries, dtype=np.float32)
        if k <= 0 or len(rows) == 0:
            return np.empty((len(rows), 0), np.int64), np.empty((len(rows), 0), np.float32)
        params = faiss.SearchParametersHNSW(efSearch=max(self.settings.ef_search, k))
        scores, labels = self._graph.search(rows, k, params=params)
        return labels.astype(np.int64), scores.astype(np.float32)

    def top_k(
        self,
        queries: npt.NDArray[np.floating],
        k: int,
        *,
        allowed: npt.NDArray[np.bool_] | None,
        seen: sp.csr_matrix | None,
        exact: ExactTopK,
    ) -> TopK:
        """Best ``k`` items per query row that are ``allowed`` and not in that row of ``seen``.

        Over-fetches from the graph, drops excluded items, and hands the rows it cannot answer
        with confidence to ``exact`` (brute force over the same rows).
        """
        n_rows, n_items = len(queries), self.n_items
        k = min(k, n_items)
        out_index = np.full((n_rows, k), -1, dtype=np.int64)
        out_score = np.full((n_rows, k), -np.inf, dtype=np.float32)
        if n_rows == 0 or k == 0:
            return out_index, out_score
        n_allowed = n_items if allowed is None else int(allowed.sum())
        blocked = np.zeros(n_rows, dtype=np.int64)
        if seen is not None:
            # Seen items that the filter allows: each one takes a place in the graph's answer.
            row_of = np.repeat(np.arange(n_rows), np.diff(seen.indptr))
            hits = np.ones(len(row_of)) if allowed is None else allowed[seen.indices]
            blocked = np.bincount(row_of, weights=hits, minlength=n_rows).astype(np.int64)
        qualifying = n_allowed - blocked
        share = max(n_allowed / n_items, 1e-9)
        fetch = np.ceil((k + blocked) / share * 1.2).astype(np.int64) + 16
        limit = min(MAX_FETCH, max(int(n_items * MAX_FETCH_SHARE), 4 * k))
        by_graph = np.flatnonzero((fetch <= limit) & (qualifying > 0))
        if len(by_graph):
            depth = int(min(fetch[by_graph].max(), n_items))
            labels, scores = self.search(queries[by_graph], depth)
            keep = labels >= 0
            if allowed is not None:
                keep &= allowed[np.maximum(labels, 0)]
            if seen is not None:
                keep &= ~_in_rows(seen[by_graph], labels, n_items)
            order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
            found = np.take_along_axis(keep, order, axis=1)
            out_index[by_graph] = np.where(found, np.take_along_axis(labels, order, axis=1), -1)
            out_score[by_graph] = np.where(
                found, np.take_along_axis(scores, order, axis=1), -np.inf
            )
            short = found.sum(axis=1) < np.minimum(k, qualifying[by_graph])
        else:
            short = np.zeros(0, dtype=bool)
        by_force = np.setdiff1d(np.arange(n_rows), by_graph[~short])
        by_force = by_force[qualifying[by_force] > 0]
        if len(by_force):
            logger.debug("%d of %d users ranked by brute force", len(by_force), n_rows)
            indices, best = exact(by_force, k)
            out_index[by_force, : indices.shape[1]] = indices
            out_score[by_force, : best.shape[1]] = best
        return out_index, out_score


def _in_rows(
    rows: sp.csr_matrix, labels: npt.NDArray[np.int64], n_items: int
) -> npt.NDArray[np.bool_]:
    """Whether ``labels[i, j]`` is a stored column of row ``i`` of ``rows``."""
    row_of = np.repeat(np.arange(rows.shape[0], dtype=np.int64), np.diff(rows.indptr))
    stored = row_of * n_items + rows.indices
    keys = np.arange(labels.shape[0], dtype=np.int64)[:, None] * n_items + labels
    return np.isin(keys, stored)


class IndexCache:
    """The index of one model, rebuilt when its item vectors are a different array."""

    def __init__(self) -> None:
        self._index: ANNIndex | None = None
        self._lock = threading.Lock()

    def __deepcopy__(self, memo: dict[int, Any]) -> IndexCache:
        return IndexCache()  # a copied model builds its own index when it needs one

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]

    def get(
        self, item_vectors: npt.NDArray[np.float32], settings: HNSWSettings | None = None
    ) -> ANNIndex:
        with self._lock:
            index = self._index
            if (
                index is None
                or index.item_vectors is not item_vectors
                or index.n_items != len(item_vectors)
                or (settings is not None and settings != index.settings)
            ):
                index = ANNIndex(item_vectors, settings)
                self._index = index
            return index

    def clear(self) -> None:
        with self._lock:
            self._index = None
