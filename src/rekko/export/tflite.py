"""TFLite (LiteRT) exports: the user tower and the ranking network, for on-device scoring.

The files take integer inputs, not raw ids: an app maps ids with ``users.txt`` / ``items.txt``
(line n is index n; inputs use ``index + 1``, with 0 meaning unknown or padding) and features
with the vocabularies described in ``manifest.json``. Files written:

* ``user_tower.tflite`` (models with embeddings): signature ``serving_default`` returning
  ``vector`` (float32 [batch, dim]). Two-tower and multitask export their real user tower
  (inputs: a bag of item indices, features, the user id if the model uses one), so a new user
  gets a vector from a few events on the device; other embedding models (neural-mf, als, bpr)
  export their user vectors (input ``user_id``). ``item_vectors.npy`` holds the item vectors:
  a user's scores are ``item_vectors @ vector``.
* ``ranking.tflite`` (pair-scoring models): signature ``serving_default`` returning ``score``
  (float32 [batch]): the raw output (logit, or rating minus the manifest's ``offset``).

What is exported comes from the model's :class:`~rekko.models.contract.ExportContract` only.
Every file is checked after conversion: the LiteRT interpreter must reproduce the Keras
outputs on real examples (the largest difference is written to the manifest).
"""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rekko.errors import ModelError
from rekko.export._common import contract_of, prepare_folder, write_ids, write_manifest
from rekko.models._tf import tf_modules
from rekko.models.base import Recommender
from rekko.models.contract import Embeddings, Network

#: Largest absolute difference allowed between LiteRT and Keras outputs after conversion.
TOLERANCE = 1e-3


def export_tflite(model: Recommender, directory: str | Path) -> Path:
    """Write the model's ``.tflite`` files, ``manifest.json`` and id lists into ``directory``.

    Raises :class:`~rekko.errors.ModelError` for models with neither embeddings nor a
    pair-scoring network, or when a converted file does not reproduce the Keras outputs.
    """
    contract = contract_of(model, "TFLite")
    folder = prepare_folder(directory)
    files = write_ids(folder, model)
    entries: dict[str, Any] = {}
    if contract.embeddings is not None:
        embeddings = contract.embeddings
        tower = contract.user_tower or _lookup_tower(embeddings)
        difference = _convert(tower, "vector", folder / "user_tower.tflite")
        np.save(folder / "item_vectors.npy", embeddings.item_vectors)
        files["item_vectors.npy"] = "float32 [items, dim]: scores = item_vectors @ vector"
        entries["user_tower.tflite"] = {
            "signature": "serving_default",
            "inputs": dict(tower.inputs),
            "outputs": {"vector": f"float32 [batch, {embeddings.dim}]"},
            "score": embeddings.score,
            "offset": embeddings.offset,
            "max_abs_difference_vs_keras": difference,
        }
    if contract.pair_scorer is not None:
        scorer = contract.pair_scorer
        difference = _convert(scorer.network, "score", folder / "ranking.tflite")
        entries["ranking.tflite"] = {
            "signature": "serving_default",
            "inputs": dict(scorer.network.inputs),
            "outputs": {"score": "float32 [batch]: logit, or rating minus offset"},
            "offset": float(scorer.offset),
            "score": "rating" if scorer.score == "rating" else "logit",
            "max_abs_difference_vs_keras": difference,
        }
    user_map, item_map, _ = model.fitted()
    vocabulary_sizes: dict[str, int] = {"users": len(user_map), "items": len(item_map)}
    for entry in entries.values():
        for name, spec in entry["inputs"].items():
            if isinstance(spec, dict) and "vocabulary_size" in spec:
                vocabulary_sizes[name] = int(spec["vocabulary_size"])
    write_manifest(
        folder,
        model,
        "tflite",
        {
            "vocabularies": dict(contract.vocabularies),
            "vocabulary_sizes": vocabulary_sizes,
            "models": entries,
            "files": {**files, **{name: "LiteRT flatbuffer" for name in entries}},
        },
    )
    return folder


def _lookup_tower(embeddings: Embeddings) -> Network:
    """A user tower that looks up the user vectors (row 0: the fallback vector)."""
    _, keras = tf_modules()
    table = np.vstack([embeddings.fallback[None, :], embeddings.user_vectors]).astype(np.float32)
    ids = keras.Input((), dtype="int32", name="user_id")
    layer = keras.layers.Embedding(len(table), table.shape[1], name="user_vectors")
    network = keras.Model({"user_id": ids}, layer(ids))
    layer.set_weights([table])
    example = {"user_id": np.arange(min(len(table), 8), dtype=np.int32)}
    described = {
        "user_id": {
            "kind": "user index + 1 in users.txt order (0 = unknown user)",
            "vocabulary_size": len(table),
        }
    }
    return Network(network, example, described)


def _convert(network: Network, output: str, path: Path) -> float:
    """Convert a Keras model to ``path`` and return the largest difference on its example."""
    tf, keras = tf_modules()
    model, example = network.model, network.example
    specs = {
        name: tf.TensorSpec(
            (None, *(None for _ in array.shape[1:])), tf.as_dtype(array.dtype), name=name
        )
        if name in network.ragged
        else tf.TensorSpec((None, *array.shape[1:]), tf.as_dtype(array.dtype), name=name)
        for name, array in example.items()
    }
    with tempfile.TemporaryDirectory() as scratch:
        # Keras 3's own SavedModel export freezes its variables correctly for the converter
        # (a Keras model saved inside a tf.Module does not).
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            name="serving_default",
            fn=lambda inputs: {output: model(inputs, training=False)},
            input_signature=[specs],
        )
        archive.write_out(scratch, verbose=False)
        content = tf.lite.TFLiteConverter.from_saved_model(scratch).convert()
    path.write_bytes(content)
    expected = np.asarray(model(dict(example), training=False), dtype=np.float32)
    actual = run_tflite(path, dict(example))[output]
    if actual.shape != expected.shape:
        raise ModelError(f"{path.name}: LiteRT output shape {actual.shape} != {expected.shape}")
    difference = float(np.max(np.abs(actual - expected))) if expected.size else 0.0
    if not difference <= TOLERANCE:
        raise ModelError(
            f"{path.name}: LiteRT output differs from Keras by {difference:.3g} "
            f"(> {TOLERANCE}); the conversion is not faithful"
        )
    return difference


def run_tflite(path: str | Path, inputs: dict[str, npt.NDArray[Any]]) -> dict[str, Any]:
    """Run a ``.tflite`` file's ``serving_default`` signature (LiteRT, else TensorFlow Lite)."""
    interpreter_class: Any
    try:
        interpreter_class = importlib.import_module("ai_edge_litert.interpreter").Interpreter
    except ImportError:  # pragma: no cover - the tf extra installs ai-edge-litert
        tf, _ = tf_modules()
        interpreter_class = tf.lite.Interpreter
    interpreter = interpreter_class(model_path=str(path))
    runner = interpreter.get_signature_runner("serving_default")
    outputs = runner(**{name: np.ascontiguousarray(array) for name, array in inputs.items()})
    return {name: np.asarray(value) for name, value in outputs.items()}
