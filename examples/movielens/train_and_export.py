"""Train a two-tower model on MovieLens-100K, then export it as a SavedModel and as TFLite.

Usage: python examples/movielens/train_and_export.py [--data DIR] [--out DIR]

Prints rekko's own top 3 for user "42" so it can be compared with what the SavedModel answers
when loaded with TensorFlow alone (see query_savedmodel.py and the README).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from rekko.data.loaders import load_movielens_100k
from rekko.export import export_savedmodel, export_tflite
from rekko.models import create_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    default_data = Path(os.environ.get("REKKO_DATASETS", "../shared/datasets")) / "ml-100k"
    parser.add_argument("--data", type=Path, default=default_data, help="the ml-100k folder")
    parser.add_argument("--out", type=Path, default=Path("movielens-export"))
    args = parser.parse_args()

    data = load_movielens_100k(args.data)
    print(data)
    started = time.perf_counter()
    model = create_model("two-tower").fit(data)
    print(f"trained two-tower in {time.perf_counter() - started:.1f} s ({model.epochs_} epochs)")
    model.save(args.out / "model")
    saved = export_savedmodel(model, args.out / "savedmodel")
    lite = export_tflite(model, args.out / "tflite")
    print(f"SavedModel: {saved}\nTFLite:     {lite}")

    titles = data.item_features.frame["title"] if data.item_features is not None else None
    print('rekko top 3 for user "42":')
    for row in model.recommend(["42"], k=3).itertuples():
        title = titles[data.items.index_of(row.item_id)] if titles is not None else ""
        print(f"  {row.rank}. item {row.item_id} {title} (score {row.score:.4f})")


if __name__ == "__main__":
    main()
