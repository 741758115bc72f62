"""TensorFlow models on MovieLens-100K: quality, training time, and what each knob does.

* Ranking quality: per-user random 80/20 split (seed 42), full-catalogue ranking with
  training items excluded (rekko's ``evaluate``), NDCG@10 and friends.
* Rating quality: RMSE on the official ``u1.base`` / ``u1.test`` split.
* ``import rekko`` time without TensorFlow, and the one-off TensorFlow import time.

``--ablations`` also trains two-tower variants, one knob changed at a time (a few minutes).
Writes results/neural.md. Needs the ``tf`` extra (``pip install -e '.[tf]'``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pandas as pd
from common import datasets_dir, header, markdown_table, write_result

from rekko.data.loaders import load_movielens_100k, load_movielens_split
from rekko.data.splits import RandomSplit
from rekko.evaluation import evaluate
from rekko.models import create_model
from rekko.models._tf import tf_modules

#: Two-tower variants: one change from the defaults each (see benchmarks/neural.md).
ABLATIONS: dict[str, dict[str, Any]] = {
    "TFRS quickstart-like: ids only, no history": {
        "history": False,
        "user_id": True,
        "item_features": False,
    },
    "+ user id embedding": {"user_id": True},
    "+ user features": {"user_features": True},
    "- item features": {"item_features": False},
    "- removal of accidental hits": {"remove_accidental_hits": False},
    "in-batch softmax (log-Q corrected)": {"softmax": "in-batch"},
    "temperature 0.05": {"temperature": 0.05},
    "temperature 0.2": {"temperature": 0.2},
    "temperature 1.0": {"temperature": 1.0},
    "embedding_dim 32": {"embedding_dim": 32},
    "embedding_dim 128": {"embedding_dim": 128},
    "history_sample 20": {"history_sample": 20},
    "history_dropout 0": {"history_dropout": 0.0},
    "no early stopping, 10 epochs": {"validation_fraction": 0.0, "max_epochs": 10},
    "l2 1e-6": {"l2": 1e-6},
}
RANKING_COLUMNS = ["model", "ndcg@10", "precision@10", "recall@10", "map@10", "coverage@10"]


def import_seconds() -> float:
    """Wall time of ``import rekko`` in a fresh interpreter (TensorFlow never loads)."""
    code = "import time; t = time.perf_counter(); import rekko; print(time.perf_counter() - t)"
    runs = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout)
        for _ in range(5)
    ]
    return float(np.median(runs))


def ranking_table(data: Any, settings: dict[str, dict[str, Any]], model: str) -> pd.DataFrame:
    rows = []
    for label, params in settings.items():
        started = time.perf_counter()
        fitted = create_model(model, **params)
        table = evaluate({label: fitted}, data, RandomSplit(test_fraction=0.2, seed=42))
        row = table.iloc[0][RANKING_COLUMNS].to_dict()
        row["fit_s"] = float(table.iloc[0]["fit_s"])
        row["epochs"] = getattr(fitted, "epochs_", "")
        rows.append(row)
        print(f"{label}: ndcg@10 {row['ndcg@10']:.4f} in {time.perf_counter() - started:.1f} s")
    return pd.DataFrame(rows)


def rmse_table(names: list[str]) -> pd.DataFrame:
    train, test = load_movielens_split(datasets_dir() / "ml-100k", "u1")
    pairs = test.interactions
    rows = []
    for name in names:
        model = create_model(name)
        started = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - started
        predicted = model._predict(pairs["user"].to_numpy(), pairs["item"].to_numpy())
        rmse = float(np.sqrt(np.mean((predicted - pairs["value"].to_numpy()) ** 2)))
        rows.append(
            {"model": name, "rmse": rmse, "fit_s": fit_s, "epochs": getattr(model, "epochs_", "")}
        )
        print(f"{name}: RMSE {rmse:.4f}")
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ablations", action="store_true", help="also train two-tower variants")
    args = parser.parse_args()

    rekko_import_s = import_seconds()
    started = time.perf_counter()
    tf, keras = tf_modules()
    tf_import_s = time.perf_counter() - started
    data = load_movielens_100k(datasets_dir() / "ml-100k")

    models = ranking_table(
        data,
        {"popularity": {}},
        "popularity",
    )
    for name in ("two-tower", "multitask", "neural-mf", "neural-mlp", "ranking"):
        models = pd.concat([models, ranking_table(data, {name: {}}, name)], ignore_index=True)
    ratings = rmse_table(["ranking", "neural-mf", "neural-mlp"])

    sections = [
        "# TensorFlow models on MovieLens-100K",
        "",
        f"{header()}; TensorFlow {tf.__version__}, Keras {keras.__version__}.",
        "",
        f"`import rekko` (no TensorFlow): {rekko_import_s:.3f} s (median of 5). "
        f"First TensorFlow + Keras import: {tf_import_s:.1f} s (not part of `fit_s` below).",
        "",
        "## Ranking: per-user random 80/20 split, seed 42, training items excluded",
        "",
        "Default parameters; `fit_s` is training time on the CPU (2 cores) including early "
        "stopping and caching the vectors; `epochs` the epoch whose weights were kept.",
        "",
        markdown_table(models),
        "",
        "## Ratings: RMSE on u1.base / u1.test",
        "",
        markdown_table(ratings),
    ]
    if args.ablations:
        settings = {"two-tower defaults": {}, **ABLATIONS}
        sections += [
            "",
            "## Two-tower knobs: one change from the defaults at a time",
            "",
            markdown_table(ranking_table(data, settings, "two-tower")),
        ]
    sections += ["", "Rerun: `python benchmarks/neural.py --ablations` (with the tf extra)."]
    print(write_result("neural", "\n".join(sections)).read_text())


if __name__ == "__main__":
    main()
