"""The MovieLens walkthrough, measured: the TFRS quickstart's model against rekko's best.

Usage: python examples/movielens/compare.py [--data DIR] [--models a,b,...]

All models are trained on the same per-user random 80/20 split of MovieLens-100K (seed 42) and
ranked over the whole catalogue with each user's training items excluded. "tfrs-quickstart"
is rekko's two-tower configured as the TFRS quickstart builds it (a user id embedding and an
item id embedding, nothing else); "two-tower" is rekko's default two-tower (the user's
history and the items' genres and titles). Then the best model by NDCG@10, trained on all the
data, gives the top 3 for user "42", the quickstart's example user.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from rekko.data.loaders import load_movielens_100k
from rekko.data.splits import RandomSplit
from rekko.evaluation import evaluate
from rekko.evaluation.evaluate import Protocol
from rekko.models import create_model

#: Name in the table -> (registered model, parameters).
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "popularity": ("popularity", {}),
    "tfrs-quickstart": (
        "two-tower",
        {"history": False, "user_id": True, "item_features": False},
    ),
    "two-tower": ("two-tower", {}),
    "item-knn": ("item-knn", {}),
    "als": ("als", {}),
    "ease": ("ease", {}),
}
COLUMNS = ("ndcg@10", "precision@10", "recall@10", "map@10", "coverage@10", "fit_s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(os.environ.get("REKKO_DATASETS", "../shared/datasets")) / "ml-100k"
    parser.add_argument("--data", type=Path, default=default_data, help="the ml-100k folder")
    parser.add_argument(
        "--models", default=",".join(MODELS), help=f"comma list of {', '.join(MODELS)}"
    )
    args = parser.parse_args()
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in names if name not in MODELS]
    if unknown or not names:
        parser.error(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")

    data = load_movielens_100k(args.data)
    print(data)
    models = {name: create_model(MODELS[name][0], **MODELS[name][1]) for name in names}
    table = evaluate(models, data, RandomSplit(0.2, seed=42), protocol=Protocol(ks=(10,)))
    table = table.sort_values("ndcg@10", ascending=False)
    print("per-user random 80/20 split, seed 42, training items excluded:\n")
    print("| model | " + " | ".join(COLUMNS) + " |")
    print("|---|" + "---|" * len(COLUMNS))
    for values in table.to_dict("records"):
        print(f"| {values['model']} | " + " | ".join(f"{values[c]:.4f}" for c in COLUMNS) + " |")

    best = str(table.iloc[0]["model"])
    model = create_model(MODELS[best][0], **MODELS[best][1]).fit(data)
    titles = data.item_features.frame["title"] if data.item_features is not None else None
    print(f'\nbest: {best}; its top 3 for user "42" (trained on all ratings):')
    for row in model.recommend(["42"], k=3).itertuples():
        title = titles[data.items.index_of(row.item_id)] if titles is not None else ""
        print(f"  {row.rank}. item {row.item_id} {title} (score {row.score:.4f})")


if __name__ == "__main__":
    main()
