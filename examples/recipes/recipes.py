"""Seefud recipes: string ids encoded, a two-tower model trained on the interactions with the
recipes' title and ingredients as item text features, exported as SavedModel and TFLite, and
top-N recipes for a user answered from the SavedModel by a process that imports TensorFlow only.

    python examples/recipes/recipes.py --data ../shared/datasets/seefud --out /tmp/recipes

Prints a JSON summary as its last line (read by ``tests/examples/test_recipes.py``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rekko.data.loaders import load_seefud
from rekko.data.splits import RandomSplit
from rekko.evaluation import evaluate
from rekko.export import export_model
from rekko.models import create_model, load_model

HERE = Path(__file__).parent


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/datasets/seefud", help="seefud folder")
    parser.add_argument("--out", default="/tmp/rekko-recipes", help="output folder")
    parser.add_argument("--user", action="append", help="user id(s) to answer (default 7)")
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--no-evaluate", action="store_true", help="skip the holdout figures")
    args = parser.parse_args(argv)
    users = args.user or ["7"]
    out = Path(args.out)
    summary: dict[str, Any] = {}

    # 1. Ids: user ids and recipe titles are strings; rekko maps them to dense indices.
    data = load_seefud(args.data)
    print(data)
    titles = data.items.to_external(np.arange(3))
    print("item index 0..2 ->", [str(t) for t in titles])
    print("user '7' -> index", data.users.index_of("7"), "of", len(data.users), repr(data.users))
    summary["n_users"], summary["n_items"] = data.n_users, data.n_items

    params = {"max_epochs": args.epochs, "embedding_dim": 32, "item_features": True, "seed": 7}
    # 2. How good is it? A per-user 20 % holdout, against popularity.
    if not args.no_evaluate:
        started = time.perf_counter()
        table = evaluate(
            [create_model("popularity"), create_model("two-tower", **params)],
            data,
            RandomSplit(0.2, seed=42),
        )
        shown = ["model", "precision@10", "recall@10", "ndcg@10", "hit_rate@10"]
        print(table[shown].to_string(index=False))
        print(f"(evaluated in {time.perf_counter() - started:.1f} s)")
        summary["evaluation"] = json.loads(table.to_json(orient="index"))

    # 3. Train on everything, save, export.
    started = time.perf_counter()
    model = create_model("two-tower", **params).fit(data)
    print(f"trained two-tower in {time.perf_counter() - started:.1f} s")
    model.save(out / "model")
    saved = export_model(out / "model", "savedmodel", out / "savedmodel")
    lite = export_model(out / "model", "tflite", out / "tflite")
    print("SavedModel:", saved)
    print("TFLite:    ", lite, sorted(p.name for p in Path(lite).iterdir()))
    summary["tflite_files"] = sorted(p.name for p in Path(lite).iterdir())

    reloaded = load_model(out / "model")
    ours = reloaded.recommend(users, k=args.k)
    summary["rekko"] = {
        str(u): [[str(i), float(s)] for i, s in zip(g["item_id"], g["score"], strict=True)]
        for u, g in ours.groupby("user_id", sort=False)
    }
    frame = data.to_frame()
    summary["seen"] = {
        u: sorted(frame.loc[frame["user_id"].astype(str) == u, "item_id"].astype(str))
        for u in users
    }

    # 4. TensorFlow alone, in a fresh process.
    command = [sys.executable, str(HERE / "query_tf.py"), str(saved), "-k", str(args.k), *users]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    summary["tensorflow"] = json.loads(done.stdout.strip().splitlines()[-1])
    for user in users:
        print(f'top {args.k} recipes for user "{user}" (rekko | TensorFlow only):')
        pairs = zip(summary["rekko"][user], summary["tensorflow"][user], strict=True)
        for rank, (a, b) in enumerate(pairs, 1):
            print(f"  {rank}. {a[0]} ({a[1]:.4f} | {b[1]:.4f})")
    print("rekko imported by the TensorFlow process:", summary["tensorflow"]["rekko imported"])
    print(json.dumps(summary, ensure_ascii=False, default=str))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
