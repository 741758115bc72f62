"""rekko on the peers' MovieLens-100K splits, scored by the peers' own scorer.

For each model and split: fit on the split's ``train.csv`` read as ``rekko train -i`` reads it
(``DataSpec(interactions=...)``), write the top 100 of every test user with training items
excluded as ``user_id,item_id,rank``, and run the shared ``score.py`` on it as a subprocess.
Each fit runs in its own process, so that the peak memory (``VmHWM``: interpreter, imports,
data and model) is measured as the peers' was.

The bench folder (``score.py``, ``ml100k/<split>/``, ``ml100k/PEERS.md``) is ``$REKKO_BENCH``,
else ``../shared/bench`` beside the repository. Writes ``results/peers-ml100k.md``.

Rerun: ``.venv/bin/python benchmarks/peers.py`` (a few minutes, most of it ``sequential``;
``--models ease,rp3beta`` runs a few; ``--inner`` first runs the grids of :data:`INNER_GRIDS`
on an inner split of the random split's training part and adds the best point of each as a
row, about 4 minutes more).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from common import ROOT, header, markdown_table, write_result

from rekko.config import DataSpec
from rekko.data.dataset import Dataset
from rekko.data.splits import RandomSplit
from rekko.evaluation import evaluate, evaluate_recommendations
from rekko.models import create_model

SPLITS = ("ml100k-random", "ml100k-temporal-loo")
#: (label, registry name, parameters): every model at its defaults.
MODELS: list[tuple[str, str, dict[str, Any]]] = [
    ("popularity", "popularity", {}),
    ("item-knn", "item-knn", {}),
    ("user-knn", "user-knn", {}),
    ("ease", "ease", {}),
    ("als", "als", {}),
    ("bpr", "bpr", {}),
    ("rp3beta", "rp3beta", {}),
    ("sparse-ease", "sparse-ease", {}),
    ("sequential", "sequential", {}),
    ("auto", "auto", {}),
]
#: The peers' rows quoted next to rekko's: (split, label in PEERS.md).
PEER_ROWS = [
    "popularity",
    "EASE lambda=500",
    "RecTools EASEModel regularization=500",
    "implicit als f64 (reg+alpha tuned)",
    "implicit bpr (defaults)",
    "implicit bm25 (tuned)",
    "LightFM WARP f64 (tuned)",
    "Cornac BPR k=64 lr=0.01 200 it",
]
COLUMNS = [
    ("recall@10", "R@10"),
    ("precision@10", "P@10"),
    ("ndcg@10", "NDCG@10"),
    ("ndcg@10_sem", "±se"),
    ("map@10", "MAP@10"),
    ("hitrate@10", "HR@10"),
    ("mrr@10", "MRR@10"),
    ("recall@100", "R@100"),
    ("coverage@10", "Cov@10"),
    ("novelty@10", "Nov@10"),
]
TOP_K = 100
#: Grids searched on an inner split of random's train part (``--inner``); the best point of
#: each is measured like the defaults. The new models' defaults were chosen on these grids.
INNER_GRIDS: dict[str, list[dict[str, Any]]] = {
    "ease": [
        {"l2": l2, "dropout": dropout}
        for l2 in (300, 500, 800, 1200, 2000)
        for dropout in (0.0, 0.1, 0.25)
    ],
    "rp3beta": [
        {"alpha": alpha, "beta": beta, "k_neighbors": k}
        for alpha in (0.7, 0.8, 0.9)
        for beta in (0.3, 0.4)
        for k in (50, 100, 200)
    ],
    "sparse-ease": [{"k_neighbors": k, "l2": l2} for k in (100, 200, 400) for l2 in (500, 1000)],
    "hybrid": [
        {"components": weights, "normalise": "zscore"}
        for weights in (
            {"ease": 0.65, "als": 0.35},
            {"ease": 0.5, "als": 0.5},
            {"ease": 0.5, "rp3beta": 0.5},
            {"ease": 0.4, "als": 0.4, "rp3beta": 0.2},
            {"ease": 0.35, "als": 0.35, "rp3beta": 0.3},
        )
    ],
}


def bench_dir() -> Path:
    """$REKKO_BENCH, else ../shared/bench beside the repository."""
    return Path(os.environ.get("REKKO_BENCH", ROOT.parent / "shared" / "bench"))


def load(path: Path) -> Dataset:
    return DataSpec(interactions=str(path)).load()


def run_one(name: str, params: dict[str, Any], split: Path, output: Path) -> dict[str, float]:
    """Fit on ``split``'s train.csv, write the top 100 of its test users to ``output``."""
    train = load(split / "train.csv")
    started = time.perf_counter()
    model = create_model(name, **params).fit(train)
    fit_s = time.perf_counter() - started
    test_users = pd.read_csv(split / "test.csv", dtype=str)["user_id"].drop_duplicates()
    started = time.perf_counter()
    recs = model.recommend(list(test_users), k=TOP_K)
    predict_s = time.perf_counter() - started
    recs[["user_id", "item_id", "rank"]].to_csv(output, index=False)
    return {"fit_s": fit_s, "predict_s": predict_s, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB.

    ``VmHWM`` where Linux has it: ``ru_maxrss`` survives ``exec``, so a child started by a large
    parent would report the parent's peak.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(name: str, params: dict[str, Any], split: Path, folder: Path) -> dict[str, Any]:
    """One model on one split, fitted in a child process and scored by score.py."""
    recs = folder / f"{name}-{split.name}.csv"
    child = subprocess.run(
        [sys.executable, __file__, "--one", name, json.dumps(params), str(split), str(recs)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    timing = json.loads(child.stdout.strip().splitlines()[-1])
    scored = subprocess.run(
        [sys.executable, str(bench_dir() / "score.py"), str(recs), str(split)],
        capture_output=True,
        text=True,
        check=True,
    )
    scores = json.loads(scored.stdout.strip().splitlines()[-1])
    if scored.stderr.strip():
        print(scored.stderr.strip(), file=sys.stderr)
    # rekko's own metrics on the same lists, to check that the definitions agree
    own = evaluate_recommendations(
        pd.read_csv(recs, dtype=str), pd.read_csv(split / "test.csv", dtype=str)
    )
    checks = {f"rekko {key}": own[key] for key in ("ndcg@10", "map@10", "map_truncated@10")}
    return {**scores, **timing, **checks}


def peer_rows(split: str) -> pd.DataFrame:
    """The rows of PEER_ROWS from PEERS.md's top-K table of ``split``."""
    text = (bench_dir() / "ml100k" / "PEERS.md").read_text()
    wanted = split.removeprefix("ml100k-")
    section = text.split(f"## Top-K, split `{wanted}`", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    names = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    table = pd.DataFrame(rows, columns=names)
    table = table[table["peer / config"].isin(PEER_ROWS)]
    keep = ["peer / config", *(label for _, label in COLUMNS), "fit s", "peak RSS MB"]
    return table[keep]


def rekko_rows(results: list[tuple[str, dict[str, Any]]]) -> pd.DataFrame:
    rows = []
    for label, scores in results:
        row: dict[str, Any] = {"peer / config": f"**rekko {label}**"}
        for key, name in COLUMNS:
            row[name] = float(scores[key])
        row["fit s"] = f"{scores['fit_s']:.2f}"
        row["peak RSS MB"] = f"{scores['peak_rss_mb']:.0f}"
        rows.append(row)
    return pd.DataFrame(rows)


def agreement(scores: dict[str, Any]) -> dict[str, float]:
    """score.py's NDCG@10 and MAP@10 next to rekko's figures for the same lists."""
    return {
        "score.py ndcg@10": float(scores["ndcg@10"]),
        "rekko ndcg@10": float(scores["rekko ndcg@10"]),
        "score.py map@10": float(scores["map@10"]),
        "rekko map_truncated@10": float(scores["rekko map_truncated@10"]),
        "rekko map@10": float(scores["rekko map@10"]),
    }


def inner_grids(split: Path) -> tuple[str, list[tuple[str, str, dict[str, Any]]]]:
    """Every grid on an 80/20 split (seed 42) of the split's training part: a markdown section
    (the ten best points of each) and the best point of each grid as a model to measure."""
    train = load(split / "train.csv")
    lines, best = [], []
    for name, grid in INNER_GRIDS.items():
        models = {json.dumps(params): create_model(name, **params) for params in grid}
        table = evaluate(models, train, RandomSplit(0.2, seed=42))
        table = table[["model", "ndcg@10", "recall@10"]].sort_values("ndcg@10", ascending=False)
        lines += [f"### {name}", "", markdown_table(table.head(10)), ""]
        top = str(table["model"].iloc[0])
        best.append((f"{name} {top} (tuned on the inner split)", name, json.loads(top)))
        print(f"inner {name}: best {top} ndcg@10 {table['ndcg@10'].iloc[0]:.4f}", flush=True)
    return "\n".join(lines), best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="Comma-separated labels of MODELS (default: all).")
    parser.add_argument("--inner", action="store_true", help="Also run the tuning grids.")
    parser.add_argument("--one", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        name, params, split, output = args.one
        print(json.dumps(run_one(name, json.loads(params), Path(split), Path(output))))
        return
    chosen = [m for m in MODELS if args.models is None or m[0] in args.models.split(",")]
    started = time.perf_counter()
    load_average = os.getloadavg()[0]
    sections: list[str] = []
    checks: list[dict[str, Any]] = []
    inner = ""
    if args.inner:
        inner, tuned = inner_grids(bench_dir() / "ml100k" / SPLITS[0])
        chosen += tuned
    with tempfile.TemporaryDirectory() as folder:
        for split_name in SPLITS:
            split = bench_dir() / "ml100k" / split_name
            results = []
            for label, name, params in chosen:
                scores = measure(name, params, split, Path(folder))
                print(f"{split_name} {label}: ndcg@10 {scores['ndcg@10']:.4f}", flush=True)
                results.append((label, scores))
            table = pd.concat([rekko_rows(results), peer_rows(split_name)], ignore_index=True)
            sections += [f"## Split `{split_name}`", "", markdown_table(table), ""]
            checks += [
                {"split": split_name, "model": label, **agreement(scores)}
                for label, scores in results
            ]
    text = "\n".join(
        [
            "# rekko on the peers' MovieLens-100K splits",
            "",
            f"{header()}; load average {load_average:.1f} when the run started (the machine "
            f"is shared); whole run {time.perf_counter() - started:.0f} s.",
            "",
            "Each rekko model at its defaults (and, in rows marked *tuned on the inner split*, "
            "the best point of a small grid searched on an 80/20 split of the random split's "
            "`train.csv` only; the same configuration is reused on temporal-loo), fitted on "
            "the split's `train.csv` as "
            "`rekko train -i train.csv` reads it (ratings are the interaction values), top 100 "
            "per test user with training items excluded, scored by the shared `score.py` "
            "(metric definitions in its docstring; its MAP@10 divides by min(|rel|, 10), "
            "rekko's `map_truncated@10`). `fit s`: one wall-clock fit; `peak RSS MB`: the "
            "child process's peak resident memory (`VmHWM`: interpreter, imports, data and "
            "model), as for the "
            "peers. Peer rows (not bold) are copied from `PEERS.md` beside the splits: the "
            "peers' best rows and their defaults.",
            "",
            *sections,
            "## rekko's metrics on the same lists",
            "",
            "`rekko.evaluation.evaluate_recommendations` on each CSV scored above. rekko's "
            "`map@10` divides by the number of relevant items (trec_eval, ranx, RecTools); "
            "`score.py`'s `map@10` divides by min(|rel|, 10), which is rekko's "
            "`map_truncated@10`.",
            "",
            markdown_table(pd.DataFrame(checks), digits=6),
            "",
            *(
                [
                    "## Inner split of `ml100k-random`'s train part (tuning grids)",
                    "",
                    "rekko's evaluate on a per-user 80/20 split (seed 42) of `train.csv`, the "
                    "ten best points of each grid. The figures are far below the test split's "
                    "because the outer test items, which good models rank high, count as "
                    "misses here; only their order matters.",
                    "",
                    inner,
                ]
                if inner
                else []
            ),
        ]
    )
    print(f"wrote {write_result('peers-ml100k', text)}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
