"""Top-K for every user of a factor model, computed by Spark and written to Parquet.

The user vectors (with each user's seen items) are spread over the cluster; the item vectors
and item ids are broadcast once; each task scores its users against the whole catalogue in
blocks that fit in :data:`BLOCK_CELLS` floats, leaves out seen items and keeps the best ``k``
with :func:`rekko.index.topk.top_k`. The ranking is exact (no approximate index). Executors
need NumPy, PyArrow and rekko (see ``docs/spark.md`` for packaging).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from rekko.errors import ModelError
from rekko.models.base import Recommender
from rekko.spark.session import require_pyspark, spark_session

logger = logging.getLogger(__name__)

#: Scores held at once per task while ranking (64M floats: 256 MiB).
BLOCK_CELLS = 1 << 26


def spark_recommend_all(
    model: str | Path | Recommender,
    k: int,
    output: str | Path,
    *,
    users: Sequence[object] | None = None,
    exclude_seen: bool = True,
    master: str | None = "local[*]",
    session: Any = None,
    spark_config: Mapping[str, str] | None = None,
    partitions: int | None = None,
) -> Path:
    """Write the top ``k`` items of every user (or of ``users``) to a Parquet folder.

    Args:
        model: a model folder or a fitted model whose scores are factor dot products (such as
            ``spark-als``; see :meth:`Recommender.factors`).
        output: the Parquet folder to write (replaced if it exists). Rows are
            ``user_id, item_id, rank, score`` with rank 1 best, as ``rekko recommend`` writes.
        exclude_seen: leave out each user's training items.
        master, session, spark_config: where to run (as for
            :func:`rekko.spark.train_spark_als`).
        partitions: how many tasks share the users (default: Spark's parallelism).

    Returns:
        ``output`` as a path.
    """
    require_pyspark("spark_recommend_all")
    import pyarrow as pa

    if k < 1:
        raise ModelError(f"k must be at least 1, got {k}")
    fitted = model if isinstance(model, Recommender) else Recommender.load(model)
    user_map, item_map, seen = fitted.fitted()
    factors = fitted.factors()
    if factors is None:
        raise ModelError(
            f"spark_recommend_all needs a factor model (such as spark-als); "
            f"'{fitted.name}' does not expose user and item vectors"
        )
    user_vectors, item_vectors = factors
    chosen = (
        np.arange(len(user_map), dtype=np.int64)
        if users is None
        else user_map.to_index(list(users), what="user")
    )
    rows = sp.csr_matrix(seen[chosen]) if exclude_seen else sp.csr_matrix((len(chosen), 1))
    table = pa.table(
        {
            "user_id": pa.array(user_map.to_external(chosen).tolist()),
            "vector": _list_column(
                np.ascontiguousarray(user_vectors[chosen], dtype=np.float32).ravel(),
                np.arange(len(chosen) + 1, dtype=np.int64) * user_vectors.shape[1],
            ),
            "seen": _list_column(rows.indices.astype(np.int32), rows.indptr.astype(np.int64)),
        }
    )
    spark = session if session is not None else spark_session(master, config=spark_config)
    frame = spark.createDataFrame(table)
    if partitions is not None:
        frame = frame.repartition(partitions)
    items = spark.sparkContext.broadcast(np.ascontiguousarray(item_vectors, dtype=np.float32))
    item_ids = spark.sparkContext.broadcast(item_map.external_ids.copy())
    id_type = {"int": "long", "str": "string"}
    schema = (
        f"user_id {id_type[user_map.kind]}, item_id {id_type[item_map.kind]}, rank int, score float"
    )

    def rank(batches: Iterator[Any]) -> Iterator[Any]:
        return _rank_batches(batches, items.value, item_ids.value, k)

    frame.mapInArrow(rank, schema).write.mode("overwrite").parquet(str(output))
    items.unpersist()
    item_ids.unpersist()
    logger.info("wrote top-%d for %d users to %s", k, len(chosen), output)
    return Path(output)


def _list_column(values: npt.NDArray[Any], offsets: npt.NDArray[np.int64]) -> Any:
    """An Arrow list column (Spark reads ``list``, not ``large_list`` or fixed-size lists)."""
    import pyarrow as pa

    if len(values) > np.iinfo(np.int32).max:
        raise ModelError("too many values for one Arrow list column: pass fewer users at once")
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))


def _rank_batches(
    batches: Iterator[Any],
    item_vectors: npt.NDArray[np.float32],
    item_ids: npt.NDArray[Any],
    k: int,
) -> Iterator[Any]:
    """Runs on executors: Arrow batches of users in, Arrow batches of ranked items out."""
    import pyarrow as pa

    from rekko.index.topk import top_k

    n_items, dims = item_vectors.shape
    block = max(1, BLOCK_CELLS // max(n_items, 1))
    for batch in batches:
        user_ids = batch.column(0)
        vectors = batch.column(1)
        seen = batch.column(2)
        flat = vectors.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        queries = flat.reshape(len(batch), dims)
        offsets = np.asarray(seen.offsets.to_numpy(), dtype=np.int64)
        seen_items = seen.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
        for start in range(0, len(batch), block):
            stop = min(start + block, len(batch))
            scores = queries[start:stop] @ item_vectors.T
            low, high = offsets[start], offsets[stop]
            owner = np.repeat(np.arange(stop - start), np.diff(offsets[start : stop + 1]))
            scores[owner, seen_items[low:high]] = -np.inf
            best, best_scores = top_k(scores, k)
            valid = best >= 0
            counts = valid.sum(axis=1)
            ranks = np.arange(best.shape[1], dtype=np.int32)[None, :] + 1
            yield pa.RecordBatch.from_arrays(
                [
                    user_ids.slice(start, stop - start).take(
                        pa.array(np.repeat(np.arange(stop - start), counts))
                    ),
                    pa.array(item_ids[best[valid]].tolist()),
                    pa.array(np.broadcast_to(ranks, best.shape)[valid]),
                    pa.array(best_scores[valid]),
                ],
                names=["user_id", "item_id", "rank", "score"],
            )
