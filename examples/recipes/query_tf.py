"""Top-N recipes for user ids from the exported SavedModel, with TensorFlow alone (no rekko).

Usage: python examples/recipes/query_tf.py SAVEDMODEL_DIR [-k N] USER_ID [USER_ID ...]
Prints one JSON object: {user_id: [[recipe title, score], ...], "rekko imported": false}.
"""

from __future__ import annotations

import json
import sys

import tensorflow as tf


def main(argv: list[str]) -> dict[str, object]:
    folder, rest = argv[0], argv[1:]
    k = 5
    if rest[:1] == ["-k"]:
        k, rest = int(rest[1]), rest[2:]
    model = tf.saved_model.load(folder)
    answer = model.signatures["recommend"](
        user_ids=tf.constant(rest),
        k=tf.constant(k, dtype=tf.int32),
        exclude=tf.constant([], dtype=tf.string),
        exclude_seen=tf.constant(True),
    )
    out: dict[str, object] = {}
    for user, items, scores in zip(
        rest, answer["item_ids"].numpy(), answer["scores"].numpy(), strict=True
    ):
        out[user] = [[i.decode(), round(float(s), 5)] for i, s in zip(items, scores, strict=True)]
    out["rekko imported"] = "rekko" in sys.modules
    print(json.dumps(out, ensure_ascii=False))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
