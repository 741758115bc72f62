"""``auto`` against its own families, on data it was not tuned on, and its fit time against ease's.

Two parts, written to ``results/auto.md``:

1. **Fit time, measured in one run.** ``ease`` and ``auto`` (default budget) fitted in turn,
   ``--repeats`` times each, interleaved (ease, auto, ease, auto...), on the peers'
   ``ml100k-random`` training part and on a synthetic 20,000-item log (``--large``); the
   median of each and their ratio. Peak memory is not measured here (see ``peers.py``).
2. **Generalisation.** Synthetic logs (``synthetic.py``) that vary the catalogue size, the
   density, the popularity skew and the value type (repeat counts or binary), plus Fiverr and
   Seefud from ``../shared/datasets``: each split per user 80/20 (seed 42) and scored with
   rekko's metrics (NDCG@10 and its standard error over test users), for ``ease``,
   ``sparse-ease``, ``als``, ``item-knn`` and ``auto`` at their defaults. Nothing here was
   used to choose a default.

The peers' splits with the peers' scorer are in ``peers.py`` (``auto`` is a row there).

Rerun: ``.venv/bin/python benchmarks/auto.py`` (about 5 minutes; ``--large`` adds the
20k-item log to both parts, about 15 minutes more on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from common import datasets_dir, header, markdown_table, write_result
from peers import bench_dir, load
from synthetic import Shape, generate

from rekko.config import DataSpec
from rekko.data.dataset import Dataset
from rekko.data.loaders import load_builtin
from rekko.data.splits import RandomSplit
from rekko.evaluation.metrics import count_relevant, hit_matrix, ndcg_at_k
from rekko.models import create_model

FAMILIES = ("ease", "sparse-ease", "als", "item-knn", "auto")
#: (label, shape, binary): the synthetic logs of part 2.
SHAPES: list[tuple[str, Shape, bool]] = [
    ("2k items, 20 events/user, Zipf 1.0, counts", Shape(200_000, 10_000, 2_000), False),
    ("2k items, 20 events/user, Zipf 1.0, binary", Shape(200_000, 10_000, 2_000), True),
    (
        "2k items, 20 events/user, Zipf 1.3, counts",
        Shape(200_000, 10_000, 2_000, item_exponent=1.3),
        False,
    ),
    ("2k items, 5 events/user, Zipf 1.0, binary", Shape(100_000, 20_000, 2_000), True),
    (
        "8k items, 40 events/user, Zipf 0.8, counts",
        Shape(400_000, 10_000, 8_000, item_exponent=0.8),
        False,
    ),
]
#: Whether this process has fitted once already (see :func:`timing`).
WARM: list[bool] = []
LARGE = ("20k items, 16 events/user, Zipf 1.0, counts", Shape.for_events(1_000_000), False)


def synthetic(shape: Shape, binary: bool, folder: Path) -> Dataset:
    path = generate(shape, folder / f"log-{shape.events}-{shape.items}-{shape.seed}.parquet")
    if binary:
        frame = pd.read_parquet(path).drop_duplicates(["user_id", "item_id"])
        frame.to_parquet(path, index=False)
    return DataSpec(interactions=str(path)).load()


def fit_seconds(name: str, data: Dataset) -> tuple[float, Any]:
    started = time.perf_counter()
    model = create_model(name).fit(data)
    return time.perf_counter() - started, model


def timing(label: str, data: Dataset, repeats: int) -> dict[str, Any]:
    """Median fit time of ease and auto, fitted in turn."""
    if not WARM:  # the first BLAS call of a process starts its threads: not part of a fit
        fit_seconds("ease", data)
        WARM.append(True)
    times: dict[str, list[float]] = {"ease": [], "auto": []}
    report: dict[str, Any] = {}
    for _ in range(repeats):
        for name in times:
            seconds, model = fit_seconds(name, data)
            times[name].append(seconds)
            if name == "auto":
                report = model.metadata_["auto"]
        last = {name: f"{seconds[-1]:.2f} s" for name, seconds in times.items()}
        print(f"{label}: {last}", flush=True)
    ease, auto = (statistics.median(times[name]) for name in ("ease", "auto"))
    return {
        "data": label,
        "ease fit s": ease,
        "auto fit s": auto,
        "auto / ease": auto / ease,
        "auto's choice": ", ".join(f"{k} {v:g}" for k, v in report["weights"].items() if v > 0),
    }


def quality(label: str, data: Dataset) -> list[dict[str, Any]]:
    """NDCG@10 (mean and standard error over test users) of each family on one split."""
    train, test = RandomSplit(0.2, seed=42).split(data)
    relevant = test.matrix
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    rows = []
    for name in FAMILIES:
        seconds, model = fit_seconds(name, train)
        ranking = model.rank(users, 10)
        hits = hit_matrix(ranking.items, relevant[users])
        ndcg = ndcg_at_k(hits, count_relevant(relevant[users]), 10)
        print(f"{label} {name}: ndcg@10 {ndcg.mean():.4f} in {seconds:.1f} s", flush=True)
        rows.append(
            {
                "data": label,
                "users": data.n_users,
                "items": data.n_items,
                "interactions": len(data),
                "model": name,
                "NDCG@10": float(ndcg.mean()),
                "±se": float(ndcg.std(ddof=1) / np.sqrt(len(ndcg))),
                "fit s": seconds,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="Fits of each model to time.")
    parser.add_argument("--large", action="store_true", help="Add the 20k-item log.")
    args = parser.parse_args()
    started = time.perf_counter()
    load_average = os.getloadavg()[0]
    ml100k = load(bench_dir() / "ml100k" / "ml100k-random" / "train.csv")
    times = [timing("ML-100K ml100k-random train.csv", ml100k, args.repeats)]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        shapes = SHAPES + ([LARGE] if args.large else [])
        for label, shape, binary in shapes:
            data = synthetic(shape, binary, Path(folder))
            rows += quality(label, data)
            if shape is LARGE[1]:
                times.append(timing(label, data, 1))
    for name in ("fiverr", "seefud"):
        rows += quality(name, load_builtin(name, datasets_dir() / name))
    table = pd.DataFrame(rows)
    best_family = (
        table[table["model"] != "auto"].groupby("data", sort=False)["NDCG@10"].max().rename("best")
    )
    autos = table[table["model"] == "auto"].set_index("data")
    ratios = pd.DataFrame(
        {
            "auto NDCG@10": autos["NDCG@10"],
            "best single family": best_family,
            "auto / best": autos["NDCG@10"] / best_family,
            "auto / ease": autos["NDCG@10"]
            / table[table["model"] == "ease"].set_index("data")["NDCG@10"],
        }
    ).reset_index()
    text = "\n".join(
        [
            "# auto: its fit time against ease's, and its quality on data it was not tuned on",
            "",
            f"{header()}; load average {load_average:.1f} when the run started (the machine "
            f"is shared); whole run {time.perf_counter() - started:.0f} s.",
            "",
            "## Fit time, measured in one run",
            "",
            f"Median of {args.repeats} fits of each, interleaved (ease, auto, ease, auto...; "
            "one each on the 20k-item log), default parameters (auto's budget 600 s).",
            "",
            markdown_table(pd.DataFrame(times), digits=2),
            "",
            "## Quality: auto against its own families",
            "",
            "Per-user random 80/20 split (seed 42) of each log; NDCG@10 of each test user's top "
            "10 (training items excluded, every test interaction relevant), ±se over users.",
            "",
            markdown_table(ratios),
            "",
            markdown_table(table),
            "",
        ]
    )
    print(f"wrote {write_result('auto', text)}")


if __name__ == "__main__":
    main()
