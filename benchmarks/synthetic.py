"""Large synthetic interaction logs with realistic long tails, written as Parquet.

What makes them realistic enough for cost measurements:

* item popularity follows a power law (Zipf exponent ``item_exponent``, about 1 in retail and
  media logs): a few hits, a very long tail;
* user activity is log-normal (most users have a handful of events, a few have thousands);
* tastes are clustered: each user belongs to one of ``clusters`` groups and draws
  ``local_share`` of their events from the group's own items (again power-law), so factor
  models and neighbours have structure to find;
* timestamps spread over a year; implicit events (``value`` = 1), with repeats.

Rows are generated and written in chunks (``row_group`` rows), so a 30M-event log needs a few
hundred MB of memory to write. Usage::

    .venv/bin/python benchmarks/synthetic.py 10000000 /tmp/events-10m.parquet
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

YEAR = 365 * 24 * 3600
START = 1_700_000_000


@dataclass(frozen=True)
class Shape:
    """How a log of ``events`` rows is shaped."""

    events: int
    users: int
    items: int
    item_exponent: float = 1.0
    activity_sigma: float = 1.2
    clusters: int = 50
    local_share: float = 0.6
    seed: int = 42

    @classmethod
    def for_events(cls, events: int, *, seed: int = 42) -> Shape:
        """Users and items grow with the log: ~20 events per user, ~50 per item."""
        return cls(
            events=events, users=max(events // 20, 10), items=max(events // 50, 10), seed=seed
        )


def _power_law_cdf(n: int, exponent: float) -> npt.NDArray[np.float64]:
    weights = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def _draw(
    cdf: npt.NDArray[np.float64], size: int, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    return np.minimum(np.searchsorted(cdf, rng.random(size)), len(cdf) - 1).astype(np.int64)


def user_activity(shape: Shape, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """Events per user: log-normal, at least one, summing exactly to ``shape.events``."""
    raw = rng.lognormal(0.0, shape.activity_sigma, shape.users)
    counts = np.maximum(np.floor(raw / raw.sum() * shape.events), 1).astype(np.int64)
    difference = shape.events - int(counts.sum())
    if difference > 0:
        np.add.at(counts, rng.choice(shape.users, difference, replace=True), 1)
    while difference < 0:  # drop from the most active users
        top = np.argsort(-counts)[:-difference]
        take = np.minimum(counts[top] - 1, 1)
        counts[top] -= take
        difference += int(take.sum())
    return counts


def generate(shape: Shape, path: Path, *, row_group: int = 2_000_000) -> Path:
    """Write the log to ``path`` (Parquet: ``user_id``, ``item_id`` int64, ``value`` float32,
    ``timestamp`` int64 seconds), user by user in chunks."""
    rng = np.random.default_rng(shape.seed)
    counts = user_activity(shape, rng)
    cluster_of_user = rng.integers(0, shape.clusters, shape.users)
    # A random popularity order, so popular items are not the low ids.
    popularity_order = rng.permutation(shape.items)
    global_cdf = _power_law_cdf(shape.items, shape.item_exponent)
    per_cluster = -(-shape.items // shape.clusters)
    local_cdf = _power_law_cdf(per_cluster, shape.item_exponent)
    schema = pa.schema(
        [
            ("user_id", pa.int64()),
            ("item_id", pa.int64()),
            ("value", pa.float32()),
            ("timestamp", pa.int64()),
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    ends = np.cumsum(counts)
    with pq.ParquetWriter(path, schema, compression="snappy") as writer:
        first_user = 0
        while first_user < shape.users:
            done = ends[first_user - 1] if first_user else 0
            last_user = int(np.searchsorted(ends, done + row_group, side="right"))
            last_user = max(last_user, first_user + 1)
            users = np.repeat(np.arange(first_user, last_user), counts[first_user:last_user])
            n = len(users)
            local = rng.random(n) < shape.local_share
            items = popularity_order[_draw(global_cdf, n, rng)]
            rank = _draw(local_cdf, int(local.sum()), rng)
            clustered = rank * shape.clusters + cluster_of_user[users[local]]
            items[local] = popularity_order[np.minimum(clustered, shape.items - 1)]
            table = pa.table(
                {
                    "user_id": users,
                    "item_id": items,
                    "value": np.ones(n, dtype=np.float32),
                    "timestamp": START + rng.integers(0, YEAR, n),
                },
                schema=schema,
            )
            writer.write_table(table, row_group_size=row_group)
            first_user = last_user
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", type=int, help="number of events (rows)")
    parser.add_argument("output", type=Path, help="Parquet file to write")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    shape = Shape.for_events(args.events, seed=args.seed)
    started = time.perf_counter()
    generate(shape, args.output)
    size = args.output.stat().st_size / 2**20
    print(
        f"{shape.events} events, {shape.users} users, {shape.items} items -> {args.output} "
        f"({size:.0f} MiB) in {time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
