"""ALS with Spark MLlib: from a source on any Spark master to a rekko model folder.

:func:`train_spark_als` is what ``rekko train --engine spark`` calls. Everything proportional to
the number of interactions (reading, checking, aggregating, indexing ids, the ALS sweeps) runs
in Spark; the driver receives the id lists, the factors and, unless ``keep_seen=False``, the
(user, item) pairs that the model folder keeps so that ``recommend`` can leave out what each
user has already seen.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from pydantic import ValidationError

from rekko.data.dataset import ITEM, USER, VALUE, Aggregate, Dataset, EventWeights
from rekko.data.readers import ColumnMap
from rekko.errors import ModelError
from rekko.models.base import _pydantic_message
from rekko.models.spark_als import SparkALS, SparkALSParams
from rekko.spark.ids import collect_id_map, index_ids
from rekko.spark.session import require_pyspark, shared_local_session, spark_session
from rekko.spark.sources import FileFormat, prepare_events, read_source

logger = logging.getLogger(__name__)

#: Below this many interactions ALS runs in one block: exactly reproducible (several blocks
#: sum partial results in the order tasks finish), and as fast on small data.
ONE_BLOCK_BELOW = 200_000


def regularization(params: SparkALSParams) -> float:
    """The regParam to use: the given one, else 0.3 (implicit) or 0.1 (explicit ratings)."""
    if params.regularization is not None:
        return params.regularization
    return 0.3 if params.implicit else 0.1


def fit_factors(
    ratings: Any, n_users: int, n_items: int, n_ratings: int, params: SparkALSParams
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Run Spark's ALS on a frame of ``user``, ``item`` (int indices) and ``value``.

    Returns dense ``(n_users, factors)`` and ``(n_items, factors)`` arrays (rows of indices that
    had no interactions are zero).
    """
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import functions as sf

    # Explicit ALS fits the ratings themselves; the transforms are for implicit strengths.
    if params.implicit and params.values == "log":
        ratings = ratings.withColumn(VALUE, sf.log1p(sf.col(VALUE)))
    elif params.implicit and params.values == "binary":
        ratings = ratings.withColumn(VALUE, sf.lit(1.0))
    context = ratings.sparkSession.sparkContext
    blocks = params.blocks or (1 if n_ratings < ONE_BLOCK_BELOW else context.defaultParallelism)
    als = ALS(
        rank=params.factors,
        maxIter=params.iterations,
        regParam=regularization(params),
        alpha=params.alpha,
        implicitPrefs=params.implicit,
        nonnegative=params.nonnegative,
        seed=params.seed,
        numUserBlocks=blocks,
        numItemBlocks=blocks,
        userCol="user",
        itemCol="item",
        ratingCol=VALUE,
        checkpointInterval=10 if context.getCheckpointDir() else -1,
    )
    model = als.fit(ratings)
    return (
        _dense_factors(model.userFactors, n_users, params.factors),
        _dense_factors(model.itemFactors, n_items, params.factors),
    )


def _dense_factors(frame: Any, n_rows: int, rank: int) -> npt.NDArray[np.float32]:
    table = frame.select("id", "features").toArrow()
    ids = table.column(0).to_numpy().astype(np.int64)
    features = table.column(1).combine_chunks()
    values = features.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    out = np.zeros((n_rows, rank), dtype=np.float32)
    out[ids] = values.reshape(len(ids), rank)
    return out


def fit_dataset(
    dataset: Dataset, params: SparkALSParams
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Factors of an in-memory data set, trained in the shared local Spark session."""
    require_pyspark("model 'spark-als'")
    import pyarrow as pa

    spark = shared_local_session()
    interactions = dataset.interactions
    table = pa.table(
        {
            "user": interactions["user"].to_numpy(dtype=np.int32),
            "item": interactions["item"].to_numpy(dtype=np.int32),
            VALUE: interactions["value"].to_numpy(dtype=np.float64),
        }
    )
    ratings = spark.createDataFrame(table)
    return fit_factors(ratings, dataset.n_users, dataset.n_items, len(dataset), params)


def train_spark_als(
    source: str | Path | None = None,
    *,
    output: str | Path,
    columns: ColumnMap | None = None,
    master: str | None = "local[*]",
    table: str | None = None,
    query: str | None = None,
    jdbc_url: str | None = None,
    jdbc_options: Mapping[str, str] | None = None,
    file_format: FileFormat = "auto",
    sep: str | None = None,
    event_weights: EventWeights | Mapping[str, float] | None = None,
    aggregate: Aggregate = "sum",
    keep_seen: bool = True,
    checkpoint_dir: str | None = None,
    spark_config: Mapping[str, str] | None = None,
    session: Any = None,
    name: str | None = None,
    **hyperparameters: Any,
) -> Path:
    """Train ALS with Spark MLlib and write a ``spark-als`` model folder to ``output``.

    Args:
        source: a CSV or Parquet path or URI Spark can read (local, ``hdfs://``, ``s3a://``,
            globs and folders of part files), a ``jdbc:`` URL, or a SQLAlchemy database URL
            as rekko's readers take (``postgresql+psycopg://user:pw@host/db``: converted to
            JDBC; Spark needs the JDBC driver jar); see
            :func:`rekko.spark.sources.read_source`.
        output: the model folder to write (loadable by :func:`rekko.models.load_model`).
        columns: which source columns hold user, item, rating, value, event and timestamp.
        master: the Spark master (``local[*]``, ``spark://host:7077``, ``yarn``, ``k8s://...``);
            ``None`` keeps what ``spark-submit`` configured.
        table, query, jdbc_url, jdbc_options: a JDBC source (a table or a query, plus Spark
            JDBC options such as ``user``, ``password``, ``driver``, ``numPartitions``).
        file_format, sep: how to read files (default: from the name; separator sniffed from a
            local file's header).
        event_weights, aggregate: as for :meth:`rekko.data.Dataset.from_frame`.
        keep_seen: store the training pairs so ``recommend`` excludes seen items (collects one
            row per pair on the driver; turn off for logs too large for the driver).
        checkpoint_dir: where ALS checkpoints every 10 iterations (on a cluster: a shared
            path such as ``hdfs:///tmp/rekko-checkpoints``); local sessions use a temp folder.
        spark_config: extra Spark settings (``{"spark.executor.memory": "8g"}``).
        session: an existing ``SparkSession`` to use instead of creating one.
        name: the data set name recorded in the model's metadata.
        hyperparameters: the ``spark-als`` hyperparameters (``factors=64``, ``implicit=False``...:
            :class:`~rekko.models.spark_als.SparkALSParams`); those not given take the default.

    Returns:
        The model folder.
    """
    require_pyspark("train_spark_als")
    try:
        params = SparkALSParams(**hyperparameters)
    except ValidationError as error:
        raise ModelError(f"spark-als: {_pydantic_message(error)}") from None
    from pyspark import StorageLevel
    from pyspark.sql import functions as sf

    started = time.perf_counter()
    spark = session if session is not None else spark_session(master, config=spark_config)
    if checkpoint_dir is not None:
        spark.sparkContext.setCheckpointDir(checkpoint_dir)
    raw, label = read_source(
        spark,
        source,
        columns=columns,
        jdbc_url=jdbc_url,
        table=table,
        query=query,
        jdbc_options=jdbc_options,
        file_format=file_format,
        sep=sep,
    )
    events = prepare_events(raw, source=label, event_weights=event_weights, aggregate=aggregate)
    if not params.implicit and not events.explicit:
        raise ModelError(
            "spark-als: explicit ALS (implicit=False) needs a rating column; map one with "
            "the column options or train with implicit=True"
        )
    pairs = events.frame.persist(StorageLevel.MEMORY_AND_DISK)
    users, n_users = index_ids(pairs, USER, "user")
    items, n_items = index_ids(pairs, ITEM, "item")
    ratings = (
        pairs.join(users, USER)
        .join(items, ITEM)
        .select("user", "item", VALUE)
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    n_ratings = ratings.count()
    pairs.unpersist()
    if n_ratings == 0:
        raise ModelError(f"{label}: no interactions to train on")
    logger.info("%s: %d pairs, %d users, %d items", label, n_ratings, n_users, n_items)
    user_factors, item_factors = fit_factors(ratings, n_users, n_items, n_ratings, params)
    trained = time.perf_counter()

    user_map = collect_id_map(users, USER, "user", events.user_kind)
    item_map = collect_id_map(items, ITEM, "item", events.item_kind)
    users.unpersist()
    items.unpersist()
    stats: tuple[float, float, float] | None = None
    if events.explicit:
        row = ratings.agg(sf.mean(VALUE), sf.min(VALUE), sf.max(VALUE)).first()
        stats = (float(row[0]), float(row[1]), float(row[2]))
    seen = (
        _collect_pairs(ratings, n_users, n_items)
        if keep_seen
        else sp.csr_matrix((n_users, n_items), dtype=np.float32)
    )
    ratings.unpersist()
    metadata = {
        "data_fingerprint": _fingerprint(seen, n_ratings) if keep_seen else None,
        "data_name": name or label,
        "explicit_data": events.explicit,
        "n_users": n_users,
        "n_items": n_items,
        "n_interactions": n_ratings,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "engine": "spark",
        "spark_version": spark.version,
        "spark_master": spark.sparkContext.master,
        "train_seconds": round(trained - started, 3),
        "seen_kept": keep_seen,
    }
    model = SparkALS.from_factors(
        params,
        users=user_map,
        items=item_map,
        seen=seen,
        user_factors=user_factors,
        item_factors=item_factors,
        rating_stats=stats,
        metadata=metadata,
    )
    folder = model.save(output)
    logger.info("wrote %s in %.1f s", folder, time.perf_counter() - started)
    return folder


def _collect_pairs(ratings: Any, n_users: int, n_items: int) -> sp.csr_matrix:
    table = ratings.select("user", "item", VALUE).toArrow()
    return sp.csr_matrix(
        (
            table.column(2).to_numpy().astype(np.float32),
            (table.column(0).to_numpy(), table.column(1).to_numpy()),
        ),
        shape=(n_users, n_items),
        dtype=np.float32,
    )


def _fingerprint(seen: sp.csr_matrix, n_ratings: int) -> str:
    import hashlib

    digest = hashlib.sha256()
    for part in (seen.indptr, seen.indices, seen.data):
        digest.update(np.ascontiguousarray(part).tobytes())
    digest.update(str(n_ratings).encode())
    return digest.hexdigest()[:16]
