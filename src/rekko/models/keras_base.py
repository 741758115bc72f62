"""The base of the TensorFlow / Keras models: shared training parameters, one trainer, state.

:class:`KerasRecommender` runs every Keras model's fit the same way: seed, encode the data
(:meth:`~KerasRecommender._prepare`), build the networks (:meth:`~KerasRecommender._build`),
then train what :meth:`~KerasRecommender._training` describes: a :class:`Training` with one
epoch's batches, the loss of a batch and the validation metric. The trainer runs the epochs,
applies the gradients (plus the networks' regularisation losses), reports progress
(:mod:`rekko.progress`), stops early when the validation metric stops improving and keeps the
best epoch's weights. Feature encoders, per-row codes and network weights are saved in one
place (:meth:`~KerasRecommender._state`).

Families: :mod:`rekko.models.two_tower` (``two-tower``, ``multitask``) and
:mod:`rekko.models.ranking` (``ranking``, ``neural-mf``, ``neural-mlp``).
"""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import Field
from pydantic.fields import FieldInfo

from rekko import progress
from rekko.data.dataset import Dataset
from rekko.errors import ModelError
from rekko.models import _tf
from rekko.models._tf import Arrays, FeatureEncoder, TowerSpec
from rekko.models.base import Params, Recommender
from rekko.models.contract import SideInputs

logger = logging.getLogger(__name__)

#: Network weights in ``state.npz``: ``weights_<network>__<index>``.
_WEIGHTS = "weights_"


class KerasParams(Params):
    """Training settings every Keras model takes (families change defaults with
    :func:`keras_default`)."""

    learning_rate: float = Field(default=0.002, gt=0, description="Adam learning rate.")
    batch_size: int = Field(default=1024, ge=8, description="Training examples per step.")
    l2: float = Field(default=1e-5, ge=0, description="L2 penalty on embeddings and weights.")
    max_epochs: int = Field(default=30, ge=1, description="Most passes over the data.")
    patience: int = Field(
        default=2, ge=1, description="Epochs without validation gain before stopping."
    )
    validation_fraction: float = Field(
        default=0.05,
        ge=0,
        lt=0.5,
        description="Interactions held out for early stopping (0: train max_epochs).",
    )
    seed: int = Field(default=42, description="Random seed (weights, batches, samples).")
    deterministic: bool = Field(
        default=True, description="Ask TensorFlow for deterministic ops (process-wide)."
    )
    verbose: bool = Field(default=False, description="Log a line per epoch at INFO level.")


def keras_default(name: str, value: Any) -> Any:
    """A :class:`KerasParams` field with another default (same type, bounds, description)."""
    return FieldInfo.merge_field_infos(KerasParams.model_fields[name], default=value)


#: One batch as the loss reads it (a tuple of arrays and dicts of arrays).
Batch = Any


@dataclass(frozen=True)
class Training:
    """What one fit trains, as :meth:`KerasRecommender._training` describes it.

    Attributes:
        batches: the batches of one epoch (called once per epoch with the fit's generator).
        loss: a batch's loss, traced by TensorFlow; the trainer adds the regularisation losses.
        validate: the validation metric of the current weights, or ``None`` to train
            ``max_epochs`` without early stopping.
        metric: the metric's name in log lines.
        higher_is_better: whether a larger metric is an improvement.
    """

    batches: Callable[[np.random.Generator], Iterable[Batch]]
    loss: Callable[[Batch], Any]
    validate: Callable[[], float] | None
    metric: str
    higher_is_better: bool


class KerasRecommender(Recommender):
    """A model trained with Keras: the shared fit, trainer and saved state (see module doc).

    Subclasses implement :meth:`_prepare` (encoders, tower specs and per-row codes, usually
    through :meth:`_encode_sides`), :meth:`_build` (the networks by name) and
    :meth:`_training`, and optionally :meth:`_after_fit`, :meth:`_settings`,
    :meth:`_extra_state` and :meth:`_restore`.
    """

    Params = KerasParams
    params: KerasParams
    #: Optional packages these models need (the ``tf`` extra).
    requires: ClassVar[tuple[str, ...]] = ("tensorflow", "keras")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._networks: dict[str, Any] | None = None
        self._weights: dict[str, list[npt.NDArray[Any]]] = {}
        self.epochs_ = 0

    # -- what a family supplies -----------------------------------------------------------
    @abstractmethod
    def _prepare(self, dataset: Dataset) -> None:
        """Encode ``dataset``: feature encoders, tower specs, per-row codes, trained flags."""

    @abstractmethod
    def _build(self, keras: Any) -> dict[str, Any]:
        """The Keras models of this model, by name (built from the prepared specs)."""

    @abstractmethod
    def _training(self, dataset: Dataset, rng: np.random.Generator) -> Training:
        """Split off validation data and describe the training (networks are built)."""

    def _after_fit(self, dataset: Dataset) -> None:
        """Cache what scoring needs, once the best weights are in place."""

    def _settings(self) -> dict[str, Any]:
        """The family's own fitted settings, saved as JSON next to the tower specs."""
        return {}

    def _extra_state(self) -> Arrays:
        """The family's own fitted arrays to save."""
        return {}

    def _restore(self, settings: Mapping[str, Any], arrays: Mapping[str, Any]) -> None:
        """Restore what :meth:`_settings` and :meth:`_extra_state` saved (networks are
        rebuilt on first use)."""

    # -- set-up ---------------------------------------------------------------------------
    def _encode_sides(self, dataset: Dataset, user_features: bool, item_features: bool) -> None:
        """Feature encoders and per-row codes of users and items, and which rows trained."""
        self.user_encoder_ = FeatureEncoder.fit(
            "user_", dataset.user_features if user_features else None
        )
        self.item_encoder_ = FeatureEncoder.fit(
            "item_", dataset.item_features if item_features else None
        )
        self.user_codes_ = (
            self.user_encoder_.encode(dataset.user_features.frame)
            if dataset.user_features is not None and not self.user_encoder_.is_empty
            else self.user_encoder_.empty(dataset.n_users)
        )
        self.item_codes_ = (
            self.item_encoder_.encode(dataset.item_features.frame)
            if dataset.item_features is not None and not self.item_encoder_.is_empty
            else self.item_encoder_.empty(dataset.n_items)
        )
        self.user_trained_ = (
            np.bincount(dataset.interactions["user"].to_numpy(), minlength=dataset.n_users) > 0
        )
        self.item_trained_ = dataset.item_popularity > 0

    def _network(self) -> dict[str, Any]:
        """The Keras models, rebuilt from the saved weights on first use after ``load``."""
        if self._networks is None:
            _, keras = _tf.tf_modules(self.name)
            networks = self._build(keras)
            for name, model in networks.items():
                model.set_weights(self._weights[name])
            self._networks = networks
        return self._networks

    # -- training -------------------------------------------------------------------------
    def _fit(self, dataset: Dataset) -> None:
        _, keras = _tf.tf_modules(self.name)
        p = self.params
        _tf.seed_everything(p.seed, p.deterministic)
        rng = np.random.default_rng(p.seed)
        self._prepare(dataset)
        self._networks = self._build(keras)
        self._train(self._training(dataset, rng), rng)
        self._after_fit(dataset)

    def _train(self, training: Training, rng: np.random.Generator) -> None:
        """Run the epochs of ``training``: steps, validation, early stopping, progress."""
        tf, keras = _tf.tf_modules(self.name)
        p = self.params
        networks = self._network()
        step = _train_step(tf, keras, networks, training.loss, p.learning_rate)
        stopper = _tf.EarlyStopping(p.patience, higher_is_better=training.higher_is_better)
        started = time.perf_counter()
        epoch = 0
        for epoch in range(1, p.max_epochs + 1):
            losses = [float(step(batch)) for batch in training.batches(rng)]
            message = f"{self.name}: epoch {epoch}, loss {np.mean(losses):.4f}"
            stop = False
            if training.validate is not None:
                value = training.validate()
                message += f", validation {training.metric} {value:.4f}"
                stop = stopper.update(
                    epoch, value, lambda: [m.get_weights() for m in networks.values()]
                )
            if p.verbose:
                logger.info("%s (%.1f s)", message, time.perf_counter() - started)
            else:
                logger.debug(message)
            progress.step(f"{self.name} epochs", epoch, p.max_epochs)
            if stop:
                break
        if training.validate is not None and stopper.best_weights is not None:
            for model, weights in zip(networks.values(), stopper.best_weights, strict=True):
                model.set_weights(weights)
            epoch = stopper.best_epoch
        self.epochs_ = epoch
        self._weights = {name: model.get_weights() for name, model in networks.items()}

    # -- export ---------------------------------------------------------------------------
    def _side_inputs(self) -> tuple[SideInputs, SideInputs]:
        """What a pair network reads per user and per item index."""
        return (
            SideInputs("user_id", dict(self.user_codes_), np.asarray(self.user_trained_, bool)),
            SideInputs("item_id", dict(self.item_codes_), np.asarray(self.item_trained_, bool)),
        )

    def _vocabularies(self) -> dict[str, dict[str, Any]]:
        return {**self.user_encoder_.labels(), **self.item_encoder_.labels()}

    # -- saving ---------------------------------------------------------------------------
    def _state(self) -> dict[str, npt.NDArray[Any]]:
        state: dict[str, npt.NDArray[Any]] = {
            "spec": _tf.json_array(
                {
                    "user": self.user_spec_.to_json(),
                    "item": self.item_spec_.to_json(),
                    "epochs": self.epochs_,
                    **self._settings(),
                }
            ),
            "user_trained": self.user_trained_,
            "item_trained": self.item_trained_,
        }
        for encoder, codes in (
            (self.user_encoder_, self.user_codes_),
            (self.item_encoder_, self.item_codes_),
        ):
            state.update(encoder.state())
            state.update({f"codes_{name}": array for name, array in codes.items()})
        for name, weights in self._weights.items():
            state.update(
                {f"{_WEIGHTS}{name}__{index}": np.asarray(w) for index, w in enumerate(weights)}
            )
        state.update(self._extra_state())
        return state

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        settings = _tf.from_json_array(arrays["spec"])
        self.user_spec_ = TowerSpec.from_json(settings["user"])
        self.item_spec_ = TowerSpec.from_json(settings["item"])
        self.epochs_ = int(settings["epochs"])
        self.user_trained_ = arrays["user_trained"]
        self.item_trained_ = arrays["item_trained"]
        self.user_encoder_ = FeatureEncoder.from_state("user_", arrays)
        self.item_encoder_ = FeatureEncoder.from_state("item_", arrays)
        self.user_codes_ = {k: arrays[f"codes_{k}"] for k in self.user_encoder_.input_specs()}
        self.item_codes_ = {k: arrays[f"codes_{k}"] for k in self.item_encoder_.input_specs()}
        self._weights = read_weights(arrays)
        self._networks = None
        self._restore(settings, arrays)


def read_weights(arrays: Mapping[str, npt.NDArray[Any]]) -> dict[str, list[npt.NDArray[Any]]]:
    """Network weights saved as ``weights_<network>__<index>``, or as
    ``weights_<network>_<index>`` (two-tower folders written before rekko had one Keras base)."""
    found: dict[str, dict[int, npt.NDArray[Any]]] = {}
    for key, array in arrays.items():
        if not key.startswith(_WEIGHTS):
            continue
        rest = key[len(_WEIGHTS) :]
        network, _, index = rest.rpartition("__") if "__" in rest else rest.rpartition("_")
        if network and index.isdigit():
            found.setdefault(network, {})[int(index)] = array
    return {
        network: [weights[index] for index in range(len(weights))]
        for network, weights in found.items()
    }


def _train_step(
    tf: Any, keras: Any, networks: Mapping[str, Any], loss: Callable[[Batch], Any], rate: float
) -> Callable[[Batch], Any]:
    """One compiled gradient step: ``loss(batch)`` plus the networks' regularisation losses,
    with Adam at ``rate`` over every trainable variable."""
    variables = [v for model in networks.values() for v in model.trainable_variables]
    optimizer = keras.optimizers.Adam(rate)

    def step(batch: Batch) -> Any:
        with tf.GradientTape() as tape:
            total = loss(batch)
            for model in networks.values():
                if model.losses:
                    total += tf.add_n(model.losses)
        gradients = tape.gradient(total, variables)
        optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return total

    compiled: Callable[[Batch], Any] = tf.function(step, reduce_retracing=True)
    return compiled


class KerasEmbeddingRecommender(KerasRecommender):
    """A Keras model whose fitted state ends in one vector per user and per item: scores are
    dot products (so the approximate index applies), similar items the cosine of item vectors.
    Subclasses set ``user_vectors_`` and ``item_vectors_`` after fitting."""

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.user_vectors_: npt.NDArray[np.float32] | None = None
        self.item_vectors_: npt.NDArray[np.float32] | None = None

    def _vectors(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        if self.user_vectors_ is None or self.item_vectors_ is None:
            raise ModelError(f"{self.name}: the model is not trained yet (call fit or load)")
        return self.user_vectors_, self.item_vectors_

    def _score(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        user_vectors, item_vectors = self._vectors()
        return np.asarray(user_vectors[users] @ item_vectors.T, dtype=np.float32)

    def _factors(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        return self._vectors()  # scores are dot products: the approximate index applies

    def _similar(self, items: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        _, item_vectors = self._vectors()
        norms = np.linalg.norm(item_vectors, axis=1, keepdims=True)
        unit = item_vectors / np.maximum(norms, 1e-12)
        return np.asarray(unit[items] @ unit.T, dtype=np.float32)
