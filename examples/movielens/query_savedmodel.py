"""Answer recommendations from an exported SavedModel with TensorFlow alone (no rekko).

Usage: python examples/movielens/query_savedmodel.py SAVEDMODEL_DIR [USER_ID ...]
"""

from __future__ import annotations

import sys

import tensorflow as tf


def main() -> None:
    folder = sys.argv[1]
    users = sys.argv[2:] or ["42"]
    model = tf.saved_model.load(folder)
    answer = model.signatures["serving_default"](user_ids=tf.constant(users))
    for user, items, scores, known in zip(
        users,
        answer["item_ids"].numpy(),
        answer["scores"].numpy(),
        answer["known"].numpy(),
        strict=True,
    ):
        print(f'top 3 for user "{user}"' + ("" if known else " (unknown user: fallback)") + ":")
        for rank, (item, score) in enumerate(zip(items[:3], scores[:3], strict=True), start=1):
            print(f"  {rank}. item {item.decode()} (score {score:.4f})")
    print("rekko imported:", "rekko" in sys.modules)


if __name__ == "__main__":
    main()
