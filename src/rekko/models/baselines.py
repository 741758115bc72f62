"""Baselines that prove the plumbing and set the bar: popularity and random."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import Field

from rekko.data.dataset import Dataset
from rekko.errors import DataError
from rekko.models.base import Abilities, Params, Recommender
from rekko.models.registry import register


class PopularityParams(Params):
    window_days: float | None = Field(
        default=None,
        gt=0,
        description="Count only interactions of the last N days before the newest one.",
    )
    weighted: bool = Field(
        default=False, description="Sum interaction values instead of counting users."
    )


@register
class Popularity(Recommender):
    """Items ranked by how many users interacted with them (the same list for everyone).

    With ``window_days``, only the most recent interactions count ("trending"). Ties are broken
    by the item's overall popularity. Anyone the model does not know gets the same list
    through :meth:`~Recommender.rank_query`, which ranks by :meth:`popularity`.
    """

    name = "popularity"
    abilities = Abilities(cold_users=True)
    Params = PopularityParams
    params: PopularityParams

    def _fit(self, dataset: Dataset) -> None:
        interactions = dataset.interactions
        if self.params.window_days is not None:
            if not dataset.has_timestamps:
                raise DataError("popularity with window_days needs timestamps in the data")
            newest = interactions["timestamp"].max()
            start = newest - self.params.window_days * 86_400
            interactions = interactions[interactions["timestamp"] >= start]
        weights = interactions["value"].to_numpy() if self.params.weighted else None
        counts = np.bincount(
            interactions["item"].to_numpy(), weights=weights, minlength=dataset.n_items
        )
        overall = np.bincount(dataset.interactions["item"].to_numpy(), minlength=dataset.n_items)
        # Overall popularity breaks ties within the window (scaled below one count).
        self.scores_ = (counts + overall / (overall.max() + 1.0)).astype(np.float32)

    def _score(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return np.broadcast_to(self.scores_, (len(users), len(self.scores_))).copy()

    def popularity(self) -> npt.NDArray[np.float32]:
        """This model's own popularity (within ``window_days`` when set)."""
        self._fitted()
        scores: npt.NDArray[np.float32] = self.scores_
        return scores

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        return {"scores": self.scores_}

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.scores_ = arrays["scores"]


class RandomParams(Params):
    seed: int = Field(default=42, description="Random seed; the same seed gives the same lists.")


@register
class RandomRecommender(Recommender):
    """Random items: the floor every model must clear. Deterministic per (seed, user)."""

    name = "random"
    Params = RandomParams
    params: RandomParams

    def _fit(self, dataset: Dataset) -> None:
        self.n_items_ = dataset.n_items

    def _score(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return (
            np.stack(
                [
                    np.random.default_rng([self.params.seed, int(user)]).random(self.n_items_)
                    for user in users
                ]
            ).astype(np.float32)
            if len(users)
            else np.empty((0, self.n_items_), dtype=np.float32)
        )

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        return {"n_items": np.asarray(self.n_items_)}

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.n_items_ = int(arrays["n_items"])
