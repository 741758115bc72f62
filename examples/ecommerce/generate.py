"""Generate a realistic shop in the Retailrocket (Kaggle) format.

Writes ``events.csv`` (``timestamp,visitorid,event,itemid,transactionid``; timestamps in
milliseconds; events ``view`` / ``addtocart`` / ``transaction``, about 96 / 3 / 1 %),
``item_properties_part1.csv`` and ``_part2.csv`` (``timestamp,itemid,property,value``:
``categoryid``, ``available`` and hashed properties) and ``category_tree.csv``
(``categoryid,parentid``). Visitors have favourite categories, items have long-tailed
popularity, most visitors come once; purchases follow carts, carts follow views.

    python examples/ecommerce/generate.py --out /tmp/shop --visitors 4000
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

START_MS = 1_430_622_000_000  # 2015-05-03, as in the real data


def generate(out: Path, visitors: int = 4000, items: int = 1500, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    # category tree: 12 roots, 60 leaves
    roots = np.arange(1, 13)
    leaves = np.arange(100, 160)
    leaf_parent = rng.choice(roots, size=len(leaves))
    with (out / "category_tree.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["categoryid", "parentid"])
        for root in roots:
            w.writerow([root, ""])
        for leaf, parent in zip(leaves, leaf_parent, strict=True):
            w.writerow([leaf, parent])
    item_ids = rng.choice(np.arange(1, 500_000), size=items, replace=False)
    item_cat = rng.choice(leaves, size=items)
    appeal = rng.pareto(1.2, size=items) + 0.05  # long tail
    available = (rng.random(items) < 0.85).astype(int)
    by_cat = {c: np.flatnonzero(item_cat == c) for c in leaves}
    # properties: categoryid, available, and two hashed ones, over two files
    rows = []
    for i, item in enumerate(item_ids):
        t = START_MS + int(rng.integers(0, 5 * 86_400_000))
        rows.append([t, item, "categoryid", item_cat[i]])
        rows.append([t, item, "available", available[i]])
        rows.append([t, item, "888", f"{rng.integers(1, 999_999)} n{rng.integers(1, 999)}.000"])
        rows.append([t, item, "790", f"n{rng.integers(100, 99_999)}.000"])
    half = len(rows) // 2
    for name, part in (("part1", rows[:half]), ("part2", rows[half:])):
        with (out / f"item_properties_{name}.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["timestamp", "itemid", "property", "value"])
            w.writerows(part)
    # events
    events = []
    transaction = 0
    span_ms = 120 * 86_400_000
    for visitor in range(visitors):
        favourites = rng.choice(leaves, size=rng.integers(1, 3), replace=False)
        sessions = rng.geometric(0.45) if rng.random() < 0.5 else 1
        for _ in range(sessions):
            t = START_MS + int(rng.integers(0, span_ms))
            for _ in range(1 + rng.geometric(0.2)):
                pool = by_cat[rng.choice(favourites)] if rng.random() < 0.85 else np.arange(items)
                if len(pool) == 0:
                    continue
                p = appeal[pool] / appeal[pool].sum()
                i = int(rng.choice(pool, p=p))
                t += int(rng.integers(5_000, 300_000))
                events.append([t, visitor, "view", item_ids[i], ""])
                if available[i] and rng.random() < 0.009 * (1 + min(appeal[i], 4)):
                    t += int(rng.integers(5_000, 120_000))
                    events.append([t, visitor, "addtocart", item_ids[i], ""])
                    if rng.random() < 0.35:
                        transaction += 1
                        t += int(rng.integers(30_000, 900_000))
                        events.append([t, visitor, "transaction", item_ids[i], transaction])
    events.sort(key=lambda e: e[0])
    with (out / "events.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "visitorid", "event", "itemid", "transactionid"])
        w.writerows(events)
    return out


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--visitors", type=int, default=4000)
    parser.add_argument("--items", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    folder = generate(Path(args.out), args.visitors, args.items, args.seed)
    print(f"wrote {folder}")
    return folder


if __name__ == "__main__":
    main(sys.argv[1:])
