"""Shared pieces of the TensorFlow models: lazy import, seeding, feature encoding, towers.

TensorFlow is optional: nothing here imports it when the module is imported (the model registry
imports every model module). :func:`tf_modules` imports it on first use and raises a clear
:class:`~rekko.errors.ModelError` when it is missing.

Feature tables are encoded once, in numpy, into integer codes and standardised numbers
(:class:`FeatureEncoder`); the Keras towers only ever see those arrays. Index 0 of every id and
vocabulary embedding is the out-of-vocabulary / padding row, like ``StringLookup``'s OOV bucket,
so unknown users, unseen labels and new items still get a vector.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from rekko.data.dataset import FeatureTable
from rekko.errors import DataError, ModelError

logger = logging.getLogger(__name__)

Arrays = dict[str, npt.NDArray[Any]]

#: Labels kept per categorical / multi-valued / text column (the most frequent ones).
MAX_VOCABULARY = 20_000
#: Words kept per text value, labels per multi-valued value.
MAX_TOKENS = 24
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def tf_modules(model: str = "this model") -> tuple[Any, Any]:
    """``(tensorflow, keras)``, imported on first use, or a ModelError saying what to install."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        # importlib keeps both modules typed as Any-valued ModuleType for mypy (they ship no
        # usable type information), so no mypy override is needed for them.
        tf = importlib.import_module("tensorflow")
        keras = importlib.import_module("keras")
    except ImportError as error:
        raise ModelError(
            f"model '{model}' needs TensorFlow with Keras 3: install rekko[tf] "
            f"(pip install 'rekko[tf]'); import failed: {error}"
        ) from None
    if not keras.__version__.startswith("3.") or keras.backend.backend() != "tensorflow":
        raise ModelError(
            f"model '{model}' needs Keras 3 on the TensorFlow backend, found Keras "
            f"{keras.__version__} on {keras.backend.backend()!r} (unset KERAS_BACKEND and "
            "TF_USE_LEGACY_KERAS)"
        )
    return tf, keras


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, numpy and TensorFlow; optionally ask TensorFlow for deterministic ops.

    Op determinism is process-wide in TensorFlow and cannot be switched off again.
    """
    tf, keras = tf_modules()
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


# -- arrays in model folders ----------------------------------------------------------------
def json_array(value: Any) -> npt.NDArray[np.uint8]:
    """A JSON document as a uint8 array, to keep small settings in ``state.npz``."""
    return np.frombuffer(json.dumps(value).encode(), dtype=np.uint8).copy()


def from_json_array(array: npt.NDArray[Any]) -> Any:
    return json.loads(np.asarray(array, dtype=np.uint8).tobytes().decode())


def string_array(values: Sequence[str]) -> npt.NDArray[np.str_]:
    """Strings as a fixed-width unicode array (saved without pickle)."""
    return np.asarray(list(values), dtype=str) if len(values) else np.zeros(0, dtype="<U1")


# -- feature encoding -----------------------------------------------------------------------
def tokens(value: object) -> list[str]:
    """Lower-case words of a text value."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return _WORD.findall(str(value).lower())


def labels(value: object) -> list[str]:
    """The labels of a multi-valued value: a tuple or list, or a ``"a|b"`` string."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, (list, tuple, np.ndarray)):
        return [str(v) for v in value if v is not None]
    return [part.strip() for part in str(value).split("|") if part.strip()]


@dataclass
class FeatureEncoder:
    """Turns a feature table into model inputs, with vocabularies learned at fit time.

    * ``categorical`` -> ``cat<j>``: int32 code per row (0 = missing or unseen label);
    * ``multi`` and ``text`` -> ``bag<j>``: int32 codes per row, padded with 0 (labels or
      lower-case words; unseen ones are dropped);
    * ``numeric``, ``latitude``, ``longitude`` -> one float32 ``numeric`` matrix, standardised
      with the training mean and deviation, missing values at the mean (0).

    Labels seen fewer than ``min_count`` times go to the unseen code, so rare values (zip
    codes) do not get an embedding that only memorises a few rows.
    """

    prefix: str
    categorical: list[str] = field(default_factory=list)
    bags: list[tuple[str, str]] = field(default_factory=list)  # (column, "multi" | "text")
    numeric: list[str] = field(default_factory=list)
    vocabularies: dict[str, list[str]] = field(default_factory=dict)
    lengths: dict[str, int] = field(default_factory=dict)
    means: list[float] = field(default_factory=list)
    scales: list[float] = field(default_factory=list)
    _lookup: dict[str, dict[str, int]] = field(default_factory=dict, repr=False)

    @classmethod
    def fit(
        cls, prefix: str, table: FeatureTable | None, rows: npt.NDArray[np.int64] | None = None
    ) -> FeatureEncoder:
        """Learn vocabularies and scales from ``table`` (only ``rows`` of it, if given)."""
        encoder = cls(prefix)
        if table is None:
            return encoder
        frame = table.frame if rows is None else table.frame.iloc[rows]
        for name, kind in table.kinds.items():
            values = frame[name]
            if kind == "categorical":
                encoder.categorical.append(name)
                counts = Counter(str(v) for v in values if v is not None)
                encoder.vocabularies[name] = _vocabulary(counts)
            elif kind in ("multi", "text"):
                split = tokens if kind == "text" else labels
                lists = [split(v)[:MAX_TOKENS] for v in values]
                counts = Counter(label for row in lists for label in row)
                encoder.bags.append((name, kind))
                encoder.vocabularies[name] = _vocabulary(counts)
                encoder.lengths[name] = max(1, max((len(row) for row in lists), default=1))
            else:
                encoder.numeric.append(name)
                numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
                finite = numbers[np.isfinite(numbers)]
                mean = float(finite.mean()) if len(finite) else 0.0
                scale = float(finite.std()) if len(finite) > 1 else 1.0
                encoder.means.append(mean)
                encoder.scales.append(scale if scale > 0 else 1.0)
        encoder._index()
        return encoder

    def _index(self) -> None:
        self._lookup = {
            name: {label: code + 1 for code, label in enumerate(vocabulary)}
            for name, vocabulary in self.vocabularies.items()
        }

    @property
    def is_empty(self) -> bool:
        return not (self.categorical or self.bags or self.numeric)

    def input_specs(self) -> dict[str, tuple[tuple[int | None, ...], str, int]]:
        """Model input name -> (shape without batch, dtype, vocabulary size incl. code 0)."""
        specs: dict[str, tuple[tuple[int | None, ...], str, int]] = {}
        for index, name in enumerate(self.categorical):
            specs[f"{self.prefix}cat{index}"] = ((), "int32", len(self.vocabularies[name]) + 1)
        for index, (name, _) in enumerate(self.bags):
            specs[f"{self.prefix}bag{index}"] = ((None,), "int32", len(self.vocabularies[name]) + 1)
        if self.numeric:
            specs[f"{self.prefix}numeric"] = ((len(self.numeric),), "float32", 0)
        return specs

    def describe(self) -> dict[str, dict[str, Any]]:
        """Each model input with the feature column(s) it encodes (for export manifests)."""
        out: dict[str, dict[str, Any]] = {}
        for index, name in enumerate(self.categorical):
            out[f"{self.prefix}cat{index}"] = {
                "column": name,
                "kind": "categorical",
                "vocabulary_size": len(self.vocabularies[name]) + 1,
            }
        for index, (name, kind) in enumerate(self.bags):
            out[f"{self.prefix}bag{index}"] = {
                "column": name,
                "kind": kind,
                "vocabulary_size": len(self.vocabularies[name]) + 1,
                "length": self.lengths[name],
            }
        if self.numeric:
            out[f"{self.prefix}numeric"] = {
                "columns": list(self.numeric),
                "kind": "numeric",
                "means": list(self.means),
                "scales": list(self.scales),
            }
        return out

    def labels(self) -> dict[str, dict[str, Any]]:
        """The labels behind each categorical and bag input (code n is label n - 1)."""
        out: dict[str, dict[str, Any]] = {}
        for index, name in enumerate(self.categorical):
            out[f"{self.prefix}cat{index}"] = {"column": name, "labels": self.vocabularies[name]}
        for index, (name, kind) in enumerate(self.bags):
            out[f"{self.prefix}bag{index}"] = {
                "column": name,
                "kind": kind,
                "labels": self.vocabularies[name],
                "tokenizer": "lower-case runs of letters and digits" if kind == "text" else "|",
            }
        return out

    def encode(self, frame: pd.DataFrame) -> Arrays:
        """Model inputs for every row of ``frame`` (a feature table's frame)."""
        n_rows = len(frame)
        out: Arrays = {}
        for index, name in enumerate(self.categorical):
            lookup = self._lookup[name]
            out[f"{self.prefix}cat{index}"] = np.asarray(
                [lookup.get(str(v), 0) if v is not None else 0 for v in frame[name]],
                dtype=np.int32,
            )
        for index, (name, kind) in enumerate(self.bags):
            lookup = self._lookup[name]
            split = tokens if kind == "text" else labels
            codes = np.zeros((n_rows, self.lengths[name]), dtype=np.int32)
            for row, value in enumerate(frame[name]):
                known = [lookup[t] for t in split(value)[:MAX_TOKENS] if t in lookup]
                known = known[: self.lengths[name]]
                codes[row, : len(known)] = known
            out[f"{self.prefix}bag{index}"] = codes
        if self.numeric:
            numbers = np.column_stack(
                [
                    pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
                    for name in self.numeric
                ]
            ).reshape(n_rows, len(self.numeric))
            scaled = (numbers - np.asarray(self.means)) / np.asarray(self.scales)
            out[f"{self.prefix}numeric"] = np.nan_to_num(scaled, nan=0.0).astype(np.float32)
        return out

    def encode_records(self, records: Sequence[Mapping[str, object]]) -> Arrays:
        """Model inputs for raw feature dicts (a new user's features); unknown names raise."""
        columns = [*self.categorical, *(name for name, _ in self.bags), *self.numeric]
        for record in records:
            unknown = sorted(set(record) - set(columns))
            if unknown:
                raise DataError(
                    f"unknown feature(s) {unknown} (this model reads: {sorted(columns) or 'none'})"
                )
        frame = pd.DataFrame(
            {name: [record.get(name) for record in records] for name in columns},
            index=pd.RangeIndex(len(records)),
        )
        for name in self.numeric:
            bad = [v for v in frame[name] if v is not None and not _is_number(v)]
            if bad:
                raise DataError(f"feature {name!r} must be a number, got {bad[0]!r}")
        return self.encode(frame)

    def empty(self, n_rows: int) -> Arrays:
        """Inputs meaning 'no features known' for ``n_rows`` rows."""
        out: Arrays = {}
        for name, (shape, dtype, _) in self.input_specs().items():
            width = tuple(1 if size is None else size for size in shape)
            out[name] = np.zeros((n_rows, *width), dtype=dtype)
        return out

    def state(self) -> Arrays:
        settings = {
            "prefix": self.prefix,
            "categorical": self.categorical,
            "bags": self.bags,
            "numeric": self.numeric,
            "lengths": self.lengths,
            "means": self.means,
            "scales": self.scales,
            "vocabularies": sorted(self.vocabularies),
        }
        out: Arrays = {f"{self.prefix}encoder": json_array(settings)}
        for index, name in enumerate(sorted(self.vocabularies)):
            out[f"{self.prefix}vocabulary{index}"] = string_array(self.vocabularies[name])
        return out

    @classmethod
    def from_state(cls, prefix: str, arrays: Mapping[str, npt.NDArray[Any]]) -> FeatureEncoder:
        settings = from_json_array(arrays[f"{prefix}encoder"])
        encoder = cls(
            prefix,
            categorical=list(settings["categorical"]),
            bags=[(name, kind) for name, kind in settings["bags"]],
            numeric=list(settings["numeric"]),
            lengths=dict(settings["lengths"]),
            means=list(settings["means"]),
            scales=list(settings["scales"]),
            vocabularies={
                name: [str(v) for v in arrays[f"{prefix}vocabulary{index}"].tolist()]
                for index, name in enumerate(settings["vocabularies"])
            },
        )
        encoder._index()
        return encoder


def _vocabulary(counts: Counter[str], min_count: int = 2) -> list[str]:
    # Sorted by count, then label, so the codes do not depend on row order.
    kept = sorted(
        (label for label, count in counts.items() if count >= min_count),
        key=lambda label: (-counts[label], label),
    )
    return kept[:MAX_VOCABULARY]


def _is_number(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def take(arrays: Mapping[str, npt.NDArray[Any]], rows: npt.NDArray[np.int64]) -> Arrays:
    """The given rows of every array."""
    return {name: array[rows] for name, array in arrays.items()}


def pad_rows(matrix: sp.csr_matrix, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.int32]:
    """Column indices + 1 of the given CSR rows, right-padded with 0 (a bag of items)."""
    counts = np.diff(matrix.indptr)[rows]
    width = max(1, int(counts.max(initial=0)))
    out = np.zeros((len(rows), width), dtype=np.int32)
    for position, row in enumerate(rows):
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        out[position, : end - start] = matrix.indices[start:end] + 1
    return out


def sample_bags(
    matrix: sp.csr_matrix,
    users: npt.NDArray[np.int64],
    leave_out: npt.NDArray[np.int64],
    size: int,
    rng: np.random.Generator,
) -> npt.NDArray[np.int32]:
    """For each (user, item) pair, up to ``size`` of the user's other items (+1, 0-padded).

    Users with at most ``size + 1`` items get all of them; others a random sample with
    replacement. The pair's own item is always left out, so a model cannot learn to find the
    target in its own input.
    """
    counts = np.diff(matrix.indptr)[users]
    positions = np.floor(rng.random((len(users), size)) * counts[:, None]).astype(np.int64)
    whole = counts <= size + 1
    positions[whole] = np.arange(size)
    valid = positions < counts[:, None]
    flat = matrix.indptr[users][:, None] + np.minimum(positions, np.maximum(counts[:, None] - 1, 0))
    flat = np.minimum(flat, max(len(matrix.indices) - 1, 0))
    items = matrix.indices[flat] if len(matrix.indices) else np.zeros_like(flat)
    valid &= items != leave_out[:, None]
    return np.where(valid, items + 1, 0).astype(np.int32)


def batches(n_rows: int, batch_size: int, rng: np.random.Generator) -> Iterator[npt.NDArray[Any]]:
    """Shuffled row positions in batches of one size (a compiled step is traced once).

    The rows left over after the last full batch wait for the next epoch's shuffle; data
    smaller than one batch is one batch.
    """
    order = rng.permutation(n_rows)
    if n_rows <= batch_size:
        yield order
        return
    for start in range(0, n_rows - batch_size + 1, batch_size):
        yield order[start : start + batch_size]


def validation_rows(
    users: npt.NDArray[np.int64], fraction: float, rng: np.random.Generator, min_left: int = 2
) -> npt.NDArray[np.bool_]:
    """A random ``fraction`` of rows to hold out, never taking a user below ``min_left`` rows."""
    held = rng.random(len(users)) < fraction
    if not held.any():
        return held
    counts = np.bincount(users)
    held_counts = np.bincount(users[held], minlength=len(counts))
    too_many = counts - held_counts < min_left
    held &= ~too_many[users]
    return held


# -- Keras building blocks ------------------------------------------------------------------
@dataclass(frozen=True)
class TowerSpec:
    """What one tower reads: an id (0 = unknown), a bag of items, encoded features."""

    prefix: str
    n_ids: int
    use_id: bool
    history_items: int  # > 0: a bag over this many items (the user's history)
    features: dict[str, tuple[tuple[int | None, ...], str, int]]
    dim: int
    hidden: tuple[int, ...] = ()
    project: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "n_ids": self.n_ids,
            "use_id": self.use_id,
            "history_items": self.history_items,
            "features": {k: [list(s), d, v] for k, (s, d, v) in self.features.items()},
            "dim": self.dim,
            "hidden": list(self.hidden),
            "project": self.project,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TowerSpec:
        return cls(
            prefix=data["prefix"],
            n_ids=int(data["n_ids"]),
            use_id=bool(data["use_id"]),
            history_items=int(data["history_items"]),
            features={k: (tuple(s), d, int(v)) for k, (s, d, v) in data["features"].items()},
            dim=int(data["dim"]),
            hidden=tuple(data["hidden"]),
            project=bool(data["project"]),
        )

    def input_names(self) -> list[str]:
        names = [f"{self.prefix}id"] if self.use_id else []
        if self.history_items:
            names.append(f"{self.prefix}history")
        return names + list(self.features)

    def ragged(self) -> frozenset[str]:
        """The inputs whose second dimension varies (the history and the bags of codes)."""
        bags = {name for name, (shape, _, _) in self.features.items() if None in shape}
        return frozenset({f"{self.prefix}history"} if self.history_items else set()) | bags


def masked_mean(keras: Any, embedded: Any, codes: Any, power: float = 1.0) -> Any:
    """Sum of the embeddings of the non-zero codes of each row over ``count ** power``.

    ``power=1`` is the mean; ``0.5`` (the "sqrtn" combiner) keeps the norm of a long bag
    comparable to one embedding's. An empty row gives zeros.
    """
    ops = keras.ops
    mask = ops.expand_dims(ops.cast(ops.not_equal(codes, 0), embedded.dtype), -1)
    total = ops.sum(embedded * mask, axis=1)
    count = ops.maximum(ops.sum(mask, axis=1), 1.0)
    return total / (count if power == 1.0 else ops.power(count, power))


def build_tower(keras: Any, spec: TowerSpec, seed: int, l2: float) -> Any:
    """A functional Keras model: dict of the spec's inputs -> vectors of size ``spec.dim``."""
    layers = keras.layers
    regularizer = keras.regularizers.L2(l2) if l2 > 0 else None
    counter = iter(range(seed * 101, seed * 101 + 10_000))

    def embedding(rows: int, width: int, name: str) -> Any:
        return layers.Embedding(
            rows,
            width,
            embeddings_initializer=keras.initializers.RandomNormal(0.0, 0.05, seed=next(counter)),
            embeddings_regularizer=regularizer,
            name=name,
        )

    inputs: dict[str, Any] = {}
    parts: list[Any] = []
    feature_width = max(8, spec.dim // 2)
    if spec.use_id:
        inputs[f"{spec.prefix}id"] = keras.Input((), dtype="int32", name=f"{spec.prefix}id")
        parts.append(
            embedding(spec.n_ids + 1, spec.dim, f"{spec.prefix}id_embedding")(
                inputs[f"{spec.prefix}id"]
            )
        )
    if spec.history_items:
        name = f"{spec.prefix}history"
        inputs[name] = keras.Input((None,), dtype="int32", name=name)
        table = embedding(spec.history_items + 1, spec.dim, f"{spec.prefix}history_embedding")
        parts.append(masked_mean(keras, table(inputs[name]), inputs[name]))
    for name, (shape, dtype, vocabulary) in spec.features.items():
        inputs[name] = keras.Input(shape, dtype=dtype, name=name)
        if dtype == "float32":
            parts.append(inputs[name])
        elif shape == ():
            parts.append(embedding(vocabulary, feature_width, f"{name}_embedding")(inputs[name]))
        else:
            table = embedding(vocabulary, feature_width, f"{name}_embedding")
            parts.append(masked_mean(keras, table(inputs[name]), inputs[name]))
    if not parts:
        raise ModelError(f"tower {spec.prefix!r} has no inputs (enable ids or features)")
    x = layers.Concatenate(name=f"{spec.prefix}concat")(parts) if len(parts) > 1 else parts[0]
    for index, width in enumerate(spec.hidden):
        x = layers.Dense(
            width,
            activation="relu",
            kernel_initializer=keras.initializers.GlorotUniform(seed=next(counter)),
            kernel_regularizer=regularizer,
            name=f"{spec.prefix}hidden{index}",
        )(x)
    if spec.project or spec.hidden or len(parts) > 1:
        x = layers.Dense(
            spec.dim,
            kernel_initializer=keras.initializers.GlorotUniform(seed=next(counter)),
            kernel_regularizer=regularizer,
            name=f"{spec.prefix}output",
        )(x)
    return keras.Model(inputs, x, name=f"{spec.prefix}tower")


def dense_stack(keras: Any, x: Any, hidden: Sequence[int], seed: int, l2: float, name: str) -> Any:
    """ReLU layers of the given widths."""
    regularizer = keras.regularizers.L2(l2) if l2 > 0 else None
    for index, width in enumerate(hidden):
        x = keras.layers.Dense(
            width,
            activation="relu",
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed + index),
            kernel_regularizer=regularizer,
            name=f"{name}{index}",
        )(x)
    return x


def call_in_batches(
    model: Any, inputs: Mapping[str, npt.NDArray[Any]], batch_size: int = 4096
) -> npt.NDArray[np.float32]:
    """``model(inputs)`` in inference mode, in row batches, as one float32 array."""
    n_rows = len(next(iter(inputs.values())))
    outputs = []
    for start in range(0, n_rows, batch_size):
        chunk = {name: array[start : start + batch_size] for name, array in inputs.items()}
        outputs.append(np.asarray(model(chunk, training=False), dtype=np.float32))
    if not outputs:
        width = model.output.shape[-1] if model.output.shape else 1
        return np.zeros((0, width), dtype=np.float32)
    return np.concatenate(outputs, axis=0)


class EarlyStopping:
    """Keeps the best weights seen on validation and says when to stop."""

    def __init__(self, patience: int, higher_is_better: bool) -> None:
        self.patience = patience
        self.sign = 1.0 if higher_is_better else -1.0
        self.best: float | None = None
        self.best_epoch = 0
        self.best_weights: list[list[npt.NDArray[Any]]] | None = None
        self.waited = 0

    def update(self, epoch: int, value: float, weights: Callable[[], list[list[Any]]]) -> bool:
        """Record this epoch's validation value; True when training should stop."""
        if self.best is None or self.sign * value > self.sign * self.best:
            self.best, self.best_epoch, self.waited = value, epoch, 0
            self.best_weights = weights()
            return False
        self.waited += 1
        return self.waited >= self.patience
