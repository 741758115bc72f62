"""Classical recommenders on MovieLens-100K: ranking quality, rating error, fit time, knobs.

* Ranking: per-user random 80/20 split (seed 42), full-catalogue ranking, training items
  excluded; every model with its default parameters, then a few "tuned" settings that were
  picked on this very split (so optimistic; the defaults were not).
* Robustness of the defaults: the same models on a second random split (seed 7), a temporal
  split (the last 20% of ratings by time) and the built-in demo shop.
* Ratings: RMSE on the official u1.base / u1.test split.
* Fit time: the fastest of several fits on the first split (the machine is shared, so the
  minimum is the figure least disturbed by other work; the median is shown as well).
* Knobs: one change from the defaults at a time, on the first split.

Writes results/classical.md. Rerun: `.venv/bin/python benchmarks/classical.py`
(add `--no-knobs` to skip the knob sweeps, about half of the run time).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from common import datasets_dir, header, markdown_table, write_result

from rekko.data.dataset import Dataset
from rekko.data.demo import load_demo
from rekko.data.loaders import load_movielens_100k, load_movielens_split
from rekko.data.splits import RandomSplit, TemporalSplit
from rekko.evaluation import evaluate
from rekko.models import create_model

#: (label, registry name, parameters). Labels with "tuned" were chosen on the seed-42 split.
DEFAULTS: list[tuple[str, str, dict[str, Any]]] = [
    ("popularity", "popularity", {}),
    ("item-knn", "item-knn", {}),
    ("user-knn", "user-knn", {}),
    ("ease", "ease", {}),
    ("als", "als", {}),
    ("bpr", "bpr", {}),
    ("biased-mf", "biased-mf", {}),
    ("knn-baseline", "knn-baseline", {}),
]
TUNED: list[tuple[str, str, dict[str, Any]]] = [
    ("ease tuned (dropout 0.4)", "ease", {"dropout": 0.4}),
    ("als tuned (128 factors)", "als", {"factors": 128}),
    ("bpr tuned (lr 0.01, 200 epochs)", "bpr", {"learning_rate": 0.01, "iterations": 200}),
    ("item-knn tuned (k 200)", "item-knn", {"k_neighbors": 200}),
]
#: One change from the defaults at a time.
KNOBS: list[tuple[str, dict[str, Any]]] = [
    ("item-knn", {"weighting": "none"}),
    ("item-knn", {"weighting": "tfidf"}),
    ("item-knn", {"k_neighbors": 20}),
    ("item-knn", {"k_neighbors": 400}),
    ("item-knn", {"shrinkage": 0.0}),
    ("item-knn", {"shrinkage": 100.0}),
    ("user-knn", {"weighting": "none"}),
    ("user-knn", {"k_neighbors": 50}),
    ("ease", {"values": "binary"}),
    ("ease", {"values": "raw"}),
    ("ease", {"dropout": 0.0}),
    ("ease", {"l2": 200.0}),
    ("ease", {"l2": 1000.0}),
    ("als", {"confidence": "linear", "alpha": 3.0, "regularization": 24.0}),
    ("als", {"confidence": "bm25", "alpha": 1.0, "regularization": 16.0}),
    ("als", {"alpha": 1.0}),
    ("als", {"regularization": 24.0}),
    ("als", {"regularization": 96.0}),
    ("als", {"alpha": 12.0, "regularization": 96.0}),
    ("als", {"factors": 32}),
    ("als", {"iterations": 15}),
    ("als", {"num_threads": 1}),
    ("bpr", {"popularity_correction": 0.0}),
    ("bpr", {"regularization": 0.01}),
    ("bpr", {"iterations": 50}),
]
RMSE_MODELS: list[tuple[str, str, dict[str, Any]]] = [
    ("biased-mf (mcmc, default)", "biased-mf", {}),
    ("biased-mf (als)", "biased-mf", {"method": "als"}),
    ("biased-mf (mcmc, 200 sweeps, seed 7)", "biased-mf", {"seed": 7}),
    ("knn-baseline", "knn-baseline", {}),
]
#: What the knobs did, from the tables this script writes and the sweeps behind the defaults.
NOTES = """## What the knobs do

* **item-knn**: the neighbourhood of the item being scored (classic item-kNN) ranks much better
  than the neighbours of each history item that implicit's `ItemItemRecommender` keeps (NDCG@10
  0.417 against 0.376 at k=100 with BM25). BM25 or TF-IDF weighting adds about 0.015 over raw
  cosine; k from 100 to 200 is flat, 20 loses 0.02, 400 loses 0.006; shrinkage barely matters
  on MovieLens (it helps a little on the sparser demo shop).
* **ease**: `values="log"` (log(1 + rating)) beats 1s and raw ratings; the EDLAE-style dropout
  term (0.25) adds a little and, more usefully, flattens the response to `l2`: NDCG@10 stays
  within 0.445-0.453 for l2 from 300 to 800 with it.
* **als**: `regularization` and `alpha` are tied: NDCG@10 is good when regularization / alpha
  is about 8 and drops fast on both sides (too little: overfitting; too much: the factors
  collapse towards a popularity ranking, first on small data sets). log confidence beats linear
  and BM25 confidence on every split we tried; implicit's own defaults (regularization 0.01,
  alpha 1, 100 factors, 15 iterations) give 0.30-0.32. More factors (128) or iterations
  change little; the thread count changes the speed only (the factors are bit-identical).
* **bpr**: implicit samples negatives in proportion to item popularity, which pushes popular
  items down; the log-popularity correction restores them (0.27 -> 0.43). The SGD needs a
  fairly strong L2 (0.03); 0.01 overfits within 150 epochs.
* **biased-mf**: Gibbs sampling (Bayesian MF with learned priors) beats the same model fitted
  by ALS (with its default or a tuned penalty) by 0.02-0.03 RMSE and has nothing to tune; the
  average over draws after burn-in is what predicts; different seeds agree within 0.002 RMSE.
"""
RANKING_COLUMNS = ["model", "ndcg@10", "precision@10", "recall@10", "map@10", "coverage@10"]


def fit_seconds(
    name: str, params: dict[str, Any], train: Dataset, repeats: int
) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU seconds (all threads) of ``repeats`` fits."""
    wall, cpu = [], []
    for _ in range(repeats):
        model = create_model(name, **params)
        started, started_cpu = time.perf_counter(), time.process_time()
        model.fit(train)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return wall, cpu


def ranking_table(
    entries: list[tuple[str, str, dict[str, Any]]], train: Dataset, test: Dataset
) -> pd.DataFrame:
    models = {label: create_model(name, **params) for label, name, params in entries}
    return evaluate(models, train=train, test=test)


def rmse_table(folder: Any) -> pd.DataFrame:
    train, test = load_movielens_split(folder, "u1")
    pairs = test.interactions
    rows = []
    for label, name, params in RMSE_MODELS:
        model = create_model(name, **params)
        started = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - started
        predicted = model.predict(
            list(train.users.to_external(pairs["user"])),
            list(train.items.to_external(pairs["item"])),
        )
        error = predicted.astype(np.float64) - pairs["value"].to_numpy(dtype=np.float64)
        rows.append(
            {
                "model": label,
                "rmse": float(np.sqrt(np.mean(error**2))),
                "mae": float(np.mean(np.abs(error))),
                "fit_s": fit_s,
            }
        )
    return pd.DataFrame(rows)


def peer_table(train: Dataset, test: Dataset) -> pd.DataFrame:
    """The `implicit` library's own models, as a user calls them, on the same split and metrics.

    ALS and BPR with the library's defaults, and item-kNN with BM25 weighting, fed the
    training matrix of ratings; top 10 with training items filtered, scored by rekko's
    metrics.
    """
    from implicit.als import AlternatingLeastSquares
    from implicit.bpr import BayesianPersonalizedRanking
    from implicit.nearest_neighbours import BM25Recommender

    from rekko.evaluation.evaluate import Protocol, TestSet, score_rankings

    protocol = Protocol(ks=(10,), beyond_accuracy=True)
    tests = TestSet.build(train, test, None)
    matrix = sp.csr_matrix(train.matrix, dtype=np.float32)
    peers: list[tuple[str, Any]] = [
        ("implicit ALS (defaults)", lambda: AlternatingLeastSquares(random_state=42)),
        ("implicit BPR (defaults)", lambda: BayesianPersonalizedRanking(random_state=42)),
        ("implicit BM25 item-kNN (K=20, defaults)", lambda: BM25Recommender()),
        ("implicit BM25 item-kNN (K=100)", lambda: BM25Recommender(K=100)),
    ]
    rows = []
    for label, build in peers:
        model = build()
        started = time.perf_counter()
        model.fit(matrix, show_progress=False)
        fit_s = time.perf_counter() - started
        ids, _ = model.recommend(
            tests.users, matrix[tests.users], N=10, filter_already_liked_items=True
        )
        ranked = np.where(ids < 0, -1, ids).astype(np.int64)
        row: dict[str, Any] = {"model": label}
        row.update(score_rankings(ranked, tests, train, protocol))
        row["fit_s"] = fit_s
        rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-knobs", action="store_true", help="skip the knob sweeps")
    parser.add_argument("--repeats", type=int, default=7, help="fits per model for fit times")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    folder = datasets_dir() / "ml-100k"
    data = load_movielens_100k(folder)
    train, test = RandomSplit(test_fraction=0.2, seed=42).split(data)

    main_table = ranking_table(DEFAULTS + TUNED, train, test)

    timing_rows = []
    for label, name, params in DEFAULTS + TUNED:
        repeats = args.repeats if name not in ("bpr", "biased-mf", "knn-baseline") else 2
        wall, cpu = fit_seconds(name, params, train, repeats)
        timing_rows.append(
            {
                "model": label,
                "fit_s_min": min(wall),
                "fit_s_median": statistics.median(wall),
                "cpu_s_min": min(cpu),
            }
        )
    timing = pd.DataFrame(timing_rows)
    main_table = main_table[RANKING_COLUMNS].merge(timing, on="model")

    robustness = {}
    for split_name, (part_train, part_test) in {
        "random seed 7": RandomSplit(test_fraction=0.2, seed=7).split(data),
        "temporal 80/20": TemporalSplit(test_fraction=0.2).split(data),
        "demo shop (seed 42)": RandomSplit(test_fraction=0.2, seed=42).split(load_demo()),
    }.items():
        table = ranking_table(DEFAULTS, part_train, part_test)
        robustness[split_name] = table.set_index("model")["ndcg@10"]
    robust = pd.DataFrame(robustness)
    robust.insert(0, "random seed 42", main_table.set_index("model")["ndcg@10"])
    robust = robust.reset_index().rename(columns={"index": "model"})

    rmse = rmse_table(folder)
    peers = peer_table(train, test)[[*RANKING_COLUMNS, "fit_s"]]

    knob_text: list[str] = []
    if not args.no_knobs:
        entries = [
            (f"{name} " + ", ".join(f"{k}={v}" for k, v in params.items()), name, params)
            for name, params in KNOBS
        ]
        knobs = ranking_table(entries, train, test)[["model", "ndcg@10", "coverage@10", "fit_s"]]
        knob_text = [
            "## Knobs: one change from the defaults at a time (random split, seed 42)",
            "",
            "Compare with the defaults' rows above. `fit_s` is a single fit here.",
            "",
            markdown_table(knobs),
            "",
        ]

    total_s = time.perf_counter() - started
    text = "\n".join(
        [
            "# Classical models on MovieLens-100K",
            "",
            f"{header()}; load average {load_before:.1f} when the run started "
            f"(the machine is shared); whole run {total_s:.0f} s.",
            "",
            "## Ranking: per-user random 80/20 split, seed 42, training items excluded",
            "",
            "Full-catalogue ranking. Explicit ratings count as interactions with their "
            "values (the rating models rank by predicted rating). Rows marked *tuned* were "
            "picked on this split; the defaults were chosen across the splits below. "
            "`fit_s_min` / `fit_s_median`: fastest and median wall-clock time of 7 fits (2 "
            "for bpr, biased-mf and knn-baseline); `cpu_s_min`: the least CPU time of a fit, "
            "summed over threads (als and ease use both cores), which other work on the "
            "machine disturbs less.",
            "",
            markdown_table(main_table),
            "",
            "## The peers on the same split, measured in the same run",
            "",
            "The `implicit` library's own models as a user calls them (`fit` on the training "
            "matrix of ratings, `recommend` with training items filtered), scored with the "
            "same metrics. Issue targets for rekko: best model >= 0.445, ALS at its defaults "
            ">= 0.42, item-kNN >= 0.39, BPR >= 0.41 (NDCG@10).",
            "",
            markdown_table(peers),
            "",
            "## The defaults on other splits and data (NDCG@10)",
            "",
            markdown_table(robust),
            "",
            "## Ratings: u1.base / u1.test",
            "",
            "Predictions clipped to the training range; unknown items fall back to baselines.",
            "",
            markdown_table(rmse),
            "",
            *knob_text,
            NOTES,
            "Rerun: `.venv/bin/python benchmarks/classical.py` (data from `$REKKO_DATASETS`, "
            "default `../shared/datasets`)",
        ]
    )
    print(write_result("classical", text).read_text())


if __name__ == "__main__":
    main()
