"""Popularity and random on MovieLens-100K (the bar every model must clear).

Per-user random 80/20 split (seed 42), full-catalogue ranking, training items excluded.
Writes results/baselines.md.
"""

from __future__ import annotations

import time

from common import datasets_dir, header, markdown_table, write_result

from rekko.data.loaders import load_movielens_100k
from rekko.data.splits import RandomSplit
from rekko.evaluation import evaluate
from rekko.models import create_model


def main() -> None:
    started = time.perf_counter()
    data = load_movielens_100k(datasets_dir() / "ml-100k")
    load_s = time.perf_counter() - started
    table = evaluate(
        {name: create_model(name) for name in ("popularity", "random")},
        data,
        RandomSplit(test_fraction=0.2, seed=42),
    )
    columns = ["model", "ndcg@10", "precision@10", "recall@10", "map@10", "coverage@10", "fit_s"]
    text = "\n".join(
        [
            "# Baselines on MovieLens-100K",
            "",
            f"{header()}; data loaded in {load_s:.2f} s.",
            "Per-user random 80/20 split, seed 42, full-catalogue ranking, "
            "training items excluded.",
            "",
            markdown_table(table[columns]),
            "",
            "Rerun: `.venv/bin/python benchmarks/baselines.py`",
        ]
    )
    print(write_result("baselines", text).read_text())


if __name__ == "__main__":
    main()
