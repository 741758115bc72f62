"""The Keras base: shared parameters and defaults, the one trainer, saved weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from rekko import progress
from rekko.data.dataset import Dataset
from rekko.errors import ModelError
from rekko.models import create_model, load_model
from rekko.models._tf import tf_modules
from rekko.models.keras_base import KerasParams, KerasRecommender, Training, read_weights

#: (model, parameter, default users get): the defaults each family had before the shared base.
DEFAULTS = [
    ("two-tower", {"learning_rate": 0.005, "l2": 0.0, "max_epochs": 20, "embedding_dim": 64}),
    ("multitask", {"learning_rate": 0.005, "l2": 0.0, "max_epochs": 20, "embedding_dim": 64}),
    ("ranking", {"learning_rate": 0.002, "l2": 3e-4, "max_epochs": 30, "embedding_dim": 32}),
    ("neural-mf", {"learning_rate": 0.002, "l2": 1e-5, "max_epochs": 30, "embedding_dim": 64}),
    ("neural-mlp", {"learning_rate": 0.002, "l2": 3e-4, "max_epochs": 30, "embedding_dim": 32}),
]
SHARED = {"batch_size": 1024, "patience": 2, "validation_fraction": 0.05, "seed": 42}


@pytest.mark.parametrize(("name", "expected"), DEFAULTS)
def test_every_keras_model_takes_the_shared_parameters_with_its_defaults(
    name: str, expected: dict[str, Any]
) -> None:
    model = create_model(name)
    assert isinstance(model, KerasRecommender)
    assert set(KerasParams.model_fields) <= set(type(model.params).model_fields)
    dumped = model.params.model_dump()
    assert {key: dumped[key] for key in {**expected, **SHARED}} == {**expected, **SHARED}
    with pytest.raises(ModelError, match="learning_rate"):
        create_model(name, learning_rate=0)


def test_weights_are_read_in_both_saved_layouts() -> None:
    one, two = np.zeros(2), np.ones(3)
    arrays = {
        "weights_user__0": one,
        "weights_user__1": two,
        "weights_user_bias__0": two,
        "weights_heads_0": one,  # two-tower folders written before the shared base
        "weights_heads_1": two,
        "codes_user_cat0": one,
    }
    weights = read_weights(arrays)
    assert sorted(weights) == ["heads", "user", "user_bias"]
    assert [len(w) for w in (weights["user"], weights["user_bias"], weights["heads"])] == [2, 1, 2]
    assert weights["heads"][1] is two


class _Scripted(KerasRecommender):
    """One dense layer; its validation metric is a fixed script, to watch the trainer."""

    name = "scripted"

    def _prepare(self, dataset: Dataset) -> None:
        pass

    def _build(self, keras: Any) -> dict[str, Any]:
        inputs = keras.Input((1,), name="x")
        layer = keras.layers.Dense(1, kernel_initializer="zeros", name="dense")
        return {"net": keras.Model(inputs, layer(inputs))}

    def _training(self, dataset: Dataset, rng: np.random.Generator) -> Training:
        raise NotImplementedError

    def _score(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        raise NotImplementedError


def test_the_trainer_stops_early_and_keeps_the_best_epoch() -> None:
    tf, keras = tf_modules()
    model = _Scripted(max_epochs=10, patience=2, learning_rate=0.1)
    model._networks = networks = model._build(keras)
    script = iter([3.0, 1.0, 2.0, 5.0, 4.0, 0.0])
    snapshots: list[list[np.ndarray]] = []

    def validate() -> float:
        snapshots.append(networks["net"].get_weights())
        return next(script)

    x = np.ones((4, 1), dtype=np.float32)
    training = Training(
        batches=lambda rng: [(x, 2 * x)],
        loss=lambda batch: tf.reduce_mean(tf.square(networks["net"](batch[0]) - batch[1])),
        validate=validate,
        metric="scripted",
        higher_is_better=False,
    )
    steps: list[tuple[str, int, int]] = []
    with progress.listening(lambda *step: steps.append(step)):
        model._train(training, np.random.default_rng(0))
    # best at epoch 2 (1.0), no gain in epochs 3 and 4: stop after 4, keep epoch 2's weights
    assert steps == [("scripted epochs", epoch, 10) for epoch in (1, 2, 3, 4)]
    assert model.epochs_ == 2
    for kept, best in zip(model._weights["net"], snapshots[1], strict=True):
        np.testing.assert_array_equal(kept, best)
    assert not np.array_equal(snapshots[1][0], snapshots[3][0])  # it did train on
    for kept, live in zip(model._weights["net"], networks["net"].get_weights(), strict=True):
        np.testing.assert_array_equal(kept, live)


def test_two_tower_folders_from_before_the_shared_base_still_load(
    small_demo: Dataset, tmp_path: Path
) -> None:
    model = create_model("two-tower", max_epochs=2).fit(small_demo)
    folder = model.save(tmp_path / "tt")
    with np.load(folder / "state.npz", allow_pickle=False) as state:
        arrays = {name.replace("__", "_"): state[name] for name in state.files}
    assert "weights_user_0" in arrays  # the old layout
    np.savez_compressed(folder / "state.npz", allow_pickle=False, **arrays)
    loaded = load_model(folder)
    users = list(small_demo.users.external_ids[:5])
    assert loaded.recommend(users, k=5).equals(model.recommend(users, k=5))
    # the networks come back from the old layout too: fold-in runs the user tower
    loaded.add_interactions(["newcomer"], [small_demo.items.external_ids[0]])
    model.add_interactions(["newcomer"], [small_demo.items.external_ids[0]])
    items = list(small_demo.items.external_ids[:5])
    np.testing.assert_allclose(
        loaded.score("newcomer", items), model.score("newcomer", items), rtol=1e-6
    )
