"""Multitask retrieval (``multitask``): a two-tower model plus named heads, trained together.

The retrieval objective ranks items as in :mod:`rekko.models.two_tower`; each head predicts,
for an interacted (user, item) pair, the probability of a stronger event: with events
``view < addtocart < transaction`` the heads ``addtocart`` and ``transaction`` learn
P(the user carts / buys | the user interacted), from the pair's strongest event type
(``dataset.interactions["event"]``). On explicit ratings, a ``rating`` head predicts the rating.
Each head has a loss weight; the total loss is
``retrieval_weight * retrieval + sum(weight[h] * loss[h])``.

Heads read the user and item vectors (their concatenation and element-wise product) through a
small ReLU layer. :meth:`MultitaskTwoTower.predict_heads` reads them out for any candidates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import Field

from rekko.data.dataset import Dataset
from rekko.errors import DataError
from rekko.models import _tf
from rekko.models.registry import register
from rekko.models.two_tower import TwoTower, TwoTowerParams

#: The head that predicts ratings on explicit data.
RATING = "rating"


class MultitaskParams(TwoTowerParams):
    heads: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Head name -> loss weight. Names are event types (or 'rating' on explicit data). "
            "Empty: every event type but the weakest (or 'rating' on ratings), weight 1."
        ),
    )
    retrieval_weight: float = Field(default=1.0, ge=0, description="Weight of the retrieval loss.")
    head_hidden: tuple[int, ...] = Field(
        default=(64,), description="Widths of the ReLU layers shared by the heads."
    )


@register
class MultitaskTwoTower(TwoTower):
    """Two-tower retrieval with extra per-pair heads (see module doc)."""

    name = "multitask"
    Params = MultitaskParams
    params: MultitaskParams

    def _prepare_extra(self, dataset: Dataset) -> None:
        interactions = dataset.interactions
        order: list[str] = []
        if "event" in interactions.columns:
            # Strength order of event types: the mean value of the pairs whose strongest event
            # it is (event weights make stronger events worth more).
            means = interactions.groupby("event")["value"].mean().sort_values(kind="stable")
            order = [str(name) for name in means.index]
        heads = dict(self.params.heads)
        if not heads:
            heads = {name: 1.0 for name in order[1:]}
            if dataset.explicit and not heads:
                heads = {RATING: 1.0}
        known = set(order) | ({RATING} if dataset.explicit else set())
        unknown = sorted(set(heads) - known)
        if unknown:
            raise DataError(
                f"{self.name}: heads {unknown} are not event types of the data (known: "
                f"{sorted(known) or 'none'}; 'rating' needs explicit ratings)"
            )
        self.event_order_ = order
        self.head_names_ = sorted(heads)
        self.head_weights_ = np.asarray([heads[h] for h in self.head_names_], dtype=np.float32)
        values = interactions["value"].to_numpy(dtype=np.float32)
        self.rating_mean_ = float(values.mean()) if dataset.explicit else 0.0
        rank = (
            interactions["event"].map({name: i for i, name in enumerate(order)}).to_numpy()
            if order
            else np.zeros(len(interactions), dtype=np.int64)
        )
        targets = np.zeros((len(interactions), len(self.head_names_)), dtype=np.float32)
        for column, head in enumerate(self.head_names_):
            if head == RATING and head not in order:
                targets[:, column] = values - self.rating_mean_
            else:
                targets[:, column] = rank >= order.index(head)
        self.head_targets_ = targets

    def _build(self, keras: Any) -> dict[str, Any]:
        networks = super()._build(keras)
        if not getattr(self, "head_names_", None):
            return networks
        dim = self.params.embedding_dim
        user = keras.Input((dim,), name="head_user")
        item = keras.Input((dim,), name="head_item")
        joined = keras.layers.Concatenate()([user, item, keras.layers.Multiply()([user, item])])
        hidden = _tf.dense_stack(
            keras, joined, self.params.head_hidden, self.params.seed + 7, self.params.l2, "head"
        )
        output = keras.layers.Dense(
            len(self.head_names_),
            kernel_initializer=keras.initializers.GlorotUniform(seed=self.params.seed + 8),
            name="head_output",
        )(hidden)
        networks["heads"] = keras.Model([user, item], output, name="heads")
        return networks

    def _extra_targets(self, rows: npt.NDArray[np.int64]) -> dict[str, npt.NDArray[Any]]:
        if not self.head_names_:
            return {}
        return {"heads": self.head_targets_[rows]}

    def _combine_loss(
        self,
        retrieval: Any,
        networks: dict[str, Any],
        user_vectors: Any,
        item_vectors: Any,
        targets: dict[str, Any],
    ) -> Any:
        if not self.head_names_:
            return retrieval
        tf = self._tf
        outputs = networks["heads"]([user_vectors, item_vectors], training=True)
        labels = targets["heads"]
        total = self.params.retrieval_weight * retrieval
        for column, head in enumerate(self.head_names_):
            if head == RATING and head not in self.event_order_:
                loss = tf.reduce_mean(tf.square(outputs[:, column] - labels[:, column]))
            else:
                loss = tf.reduce_mean(
                    tf.nn.sigmoid_cross_entropy_with_logits(labels[:, column], outputs[:, column])
                )
            total += float(self.head_weights_[column]) * loss
        return total

    def predict_heads(self, user: object, items: Sequence[object]) -> pd.DataFrame:
        """Each head's prediction for ``user`` and each of ``items``.

        Columns: ``item_id``, ``score`` (retrieval score) and one per head: a probability for
        event heads, a rating for the ``rating`` head.
        """
        user_map, item_map, _ = self._fitted()
        user_vectors, item_vectors = self._vectors()
        user_index = user_map.index_of(user, what="user")
        item_index = item_map.to_index(items, what="item")
        rows = item_vectors[item_index]
        frame = pd.DataFrame(
            {
                "item_id": item_map.to_external(item_index),
                "score": (rows @ user_vectors[user_index]).astype(np.float32),
            }
        )
        if self.head_names_ and len(item_index):
            repeated = np.repeat(user_vectors[user_index][None, :], len(item_index), axis=0)
            outputs = np.asarray(
                self._network()["heads"]([repeated, rows], training=False), dtype=np.float32
            )
            for column, head in enumerate(self.head_names_):
                if head == RATING and head not in self.event_order_:
                    frame[head] = outputs[:, column] + self.rating_mean_
                else:
                    frame[head] = 1.0 / (1.0 + np.exp(-outputs[:, column]))
        else:
            for head in self.head_names_:
                frame[head] = np.zeros(len(item_index), dtype=np.float32)
        return frame

    def _extra_state(self) -> _tf.Arrays:
        return {
            **super()._extra_state(),
            "heads": _tf.json_array(
                {
                    "names": self.head_names_,
                    "weights": self.head_weights_.tolist(),
                    "event_order": self.event_order_,
                    "rating_mean": self.rating_mean_,
                }
            ),
        }

    def _restore(self, settings: Mapping[str, Any], arrays: Mapping[str, Any]) -> None:
        super()._restore(settings, arrays)
        heads = _tf.from_json_array(arrays["heads"])
        self.head_names_ = list(heads["names"])
        self.head_weights_ = np.asarray(heads["weights"], dtype=np.float32)
        self.event_order_ = list(heads["event_order"])
        self.rating_mean_ = float(heads["rating_mean"])
