"""Map external ids to contiguous integers inside Spark, and bring the maps back as ``IdMap``s.

The interactions never travel to the driver to be indexed: the distinct ids are sorted and
numbered by the cluster (a distributed ``zipWithIndex`` on the JVM side, without Python
workers), then joined back to the interactions. Only the id lists themselves, which rekko's
model folder stores anyway, are collected.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from rekko.data.idmap import IdMap
from rekko.errors import DataError

#: Spark's ALS takes ``int`` ids.
MAX_IDS = 2**31 - 1
_PARTITION, _ROW_ID = "_rekko_partition", "_rekko_row_id"


def index_ids(frame: Any, column: str, index: str) -> tuple[Any, int]:
    """A frame ``(column, index)`` numbering the distinct values of ``column`` from 0, in
    sorted order, and how many there are. The frame is cached: unpersist it when done."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as sf

    distinct = frame.select(column).distinct().orderBy(column)
    # monotonically_increasing_id() is (partition << 33) + row within the partition; with each
    # partition's size, that gives a dense index without moving rows to one partition.
    tagged = distinct.select(
        column,
        sf.spark_partition_id().alias(_PARTITION),
        sf.monotonically_increasing_id().alias(_ROW_ID),
    ).persist(StorageLevel.MEMORY_AND_DISK)
    sizes = sorted(tuple(row) for row in tagged.groupBy(_PARTITION).count().collect())
    offsets, total = [], 0
    for partition, size in sizes:
        offsets.append((int(partition), total))
        total += int(size)
    if total > MAX_IDS:
        tagged.unpersist()
        raise DataError(
            f"{total} distinct values in {column!r}: Spark's ALS takes at most {MAX_IDS}"
        )
    spark = frame.sparkSession
    starts = spark.createDataFrame(offsets or [(0, 0)], [_PARTITION, "_rekko_offset"])
    numbered = tagged.join(sf.broadcast(starts), _PARTITION).select(
        column,
        (
            sf.col("_rekko_offset")
            + sf.col(_ROW_ID)
            - sf.shiftleft(sf.col(_PARTITION).cast("long"), 33)
        )
        .cast("int")
        .alias(index),
    )
    result = numbered.persist(StorageLevel.MEMORY_AND_DISK)
    result.count()
    tagged.unpersist()
    return result, total


def collect_id_map(indexed: Any, column: str, index: str, kind: Literal["int", "str"]) -> IdMap:
    """The :class:`IdMap` of a frame from :func:`index_ids` (collected through Arrow)."""
    table = indexed.select(index, column).toArrow()
    positions: npt.NDArray[np.int64] = table.column(0).to_numpy().astype(np.int64)
    values = table.column(1).to_numpy(zero_copy_only=False)
    ordered = np.empty(len(positions), dtype=np.int64 if kind == "int" else object)
    ordered[positions] = values
    return IdMap(ordered.tolist(), kind)
