"""``auto``: model families and a blend of them, chosen on an inner split of the training data.

Fitting ``auto`` on a data set:

1. holds out ``validation_fraction`` of each user's interactions (a per-user random split of
   the training data given to ``fit``; nothing else is seen);
2. fits each candidate family on the rest, in order, while the search part of the time budget
   lasts: by default a linear item-item model (dense ``ease`` up to :data:`DENSE_ITEMS` items
   when its estimated cost fits the budget, else ``sparse-ease``, whose cost grows with the
   catalogue only linearly), ``als``, ``item-knn``, and ``content`` when the data has item
   features;
3. scores the held-out interactions of up to ``validation_users`` users with each fitted
   candidate, normalises each user's scores over the unseen items (``normalise``), and learns
   blend weights by coordinate ascent on NDCG@k: the best single family at weight 1, every
   other family's weight picked from :data:`WEIGHT_GRID` in turn, until no change helps;
4. refits the families with a weight above 0 on all of the data, as a weighted blend (like
   ``hybrid``, with the learned weights).

What was tried, each family's inner score and fit time, the weights and the blend's inner score
are kept in the model's metadata (``model.json``, shown by ``rekko models FOLDER``).

The learned weights are the model's state: a saved ``auto`` model loads as the blend it chose.
A time budget that cuts the search makes the choice depend on the machine's speed; with the
default budget the search on data of ML-100K's size or a 20k-item catalogue is never cut.

Cost: one fit of each family on 80% of the data, scoring of the validation users, and one fit of
each chosen family on all of it, about twice the sum of the chosen families' fit times.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from pydantic import Field, model_validator
from scipy.linalg import lapack

from rekko import progress
from rekko.data.dataset import Dataset
from rekko.data.splits import RandomSplit
from rekko.errors import DataError, ModelError
from rekko.evaluation.metrics import ndcg_at_k
from rekko.index.topk import top_k
from rekko.models.base import Params, Recommender, seen_entries
from rekko.models.ease import MAX_ITEMS
from rekko.models.hybrid import Normalise, _Ensemble, normalise_scores
from rekko.models.registry import create_model, get_model_class, register

logger = logging.getLogger(__name__)

#: Largest catalogue for which dense ``ease`` is a candidate (its cost is cubic in the items).
DENSE_ITEMS = 20_000
#: Candidates tried when ``candidates`` is not given (``content`` only with item features).
DEFAULT_CANDIDATES = ("ease", "als", "item-knn", "content")
#: Blend weights tried for each family relative to the best one (which keeps weight 1).
WEIGHT_GRID = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0)
#: Share of the time budget the search may spend before it stops trying more families.
SEARCH_SHARE = 0.5
#: Share of the time budget that two dense EASE fits may take (estimated) for EASE to be tried.
DENSE_SHARE = 0.8
#: Side of the matrix whose inversion times this machine for that estimate.
PROBE_SIDE = 2048
#: Each candidate's best items per validation user that enter the pool the blend re-ranks.
POOL = 50
#: Validation users scored at once (bounds memory to this many rows of the catalogue).
CHUNK = 256
#: Coordinate-ascent rounds at most, and the least gain in the inner score that counts.
ROUNDS, MIN_GAIN = 4, 1e-4
#: Families that cannot be blended (ensembles choose their own components).
_NOT_CANDIDATES = frozenset({"auto", "hybrid", "fallback"})


class AutoParams(Params):
    candidates: list[str] | None = Field(
        default=None,
        description="Registered models to try, in order (the first is always fitted). "
        "Default: ease (sparse-ease on large catalogues), als, item-knn, and content when the "
        "data has item features.",
    )
    candidate_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Model name -> that model's parameters."
    )
    time_budget: float = Field(
        default=600.0,
        gt=0,
        description="Seconds for the whole fit. The search stops trying families once half is "
        "spent, and leaves out a family whose refit on all data would overrun it.",
    )
    validation_fraction: float = Field(
        default=0.2,
        gt=0,
        lt=1,
        description="Share of each user's interactions held out to choose the blend.",
    )
    validation_users: int = Field(
        default=5000, ge=1, description="Users whose held-out interactions are scored, at most."
    )
    k: int = Field(default=10, ge=1, le=100, description="Cut-off of the inner NDCG@k.")
    normalise: Normalise = Field(
        default="zscore", description="How each family's scores are rescaled per user."
    )
    seed: int = Field(default=42, description="Seed of the inner split and the user sample.")

    @model_validator(mode="after")
    def _check(self) -> AutoParams:
        if self.candidates is not None:
            if not self.candidates:
                raise ValueError("candidates must name at least one model")
            if len(set(self.candidates)) != len(self.candidates):
                raise ValueError("candidates must not repeat a model")
            for name in self.candidates:
                if name in _NOT_CANDIDATES:
                    raise ValueError(f"{name!r} cannot be a candidate of auto")
                get_model_class(name)  # unknown names fail here, listing the known ones
        unknown = set(self.candidate_params) - set(self.planned())
        if unknown:
            raise ValueError(f"candidate_params for models not in candidates: {sorted(unknown)}")
        return self

    def planned(self) -> list[str]:
        """Every family the search may try."""
        if self.candidates is not None:
            return list(self.candidates)
        return ["ease", "sparse-ease", *DEFAULT_CANDIDATES[1:]]


@dataclass
class _Pool:
    """The validation users' candidate items and what the blend needs to rank them."""

    items: npt.NDArray[np.int64]  # (users, width) item indices, sorted; duplicates marked
    duplicate: npt.NDArray[np.bool_]  # (users, width) a repeat of the entry before it
    hits: npt.NDArray[np.bool_]  # (users, width) held out for that user
    n_relevant: npt.NDArray[np.int64]  # (users,) held-out items per user
    scores: dict[str, npt.NDArray[np.float32]]  # family -> (users, width) normalised scores


@register
class Auto(_Ensemble):
    """A blend of model families with weights learned on an inner split of the training data."""

    name = "auto"
    Params = AutoParams
    params: AutoParams

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.weights_: dict[str, float] = {}

    def _planned_roles(self) -> list[str]:
        return self.params.planned()

    def _roles(self, dataset: Dataset) -> list[str]:
        return [role for role, weight in self.weights_.items() if weight > 0]

    def _role_spec(self, role: str) -> tuple[str, dict[str, Any]]:
        return role, dict(self.params.candidate_params.get(role, {}))

    def _weight(self, role: str) -> float:
        return self.weights_[role]

    # -- the search ------------------------------------------------------------------------
    def _fit(self, dataset: Dataset) -> None:
        started = time.perf_counter()
        budget = self.params.time_budget
        names = self._candidates(dataset)
        inner, held_out = RandomSplit(
            test_fraction=self.params.validation_fraction, seed=self.params.seed
        ).split(dataset)
        users = self._validation_users(held_out)
        growth = len(dataset) / max(len(inner), 1)
        tried: list[dict[str, Any]] = []
        fitted: dict[str, Recommender] = {}
        refit_estimate: dict[str, float] = {}
        task = "auto: families tried"
        for position, name in enumerate(names):
            params = self._role_spec(name)[1]
            entry: dict[str, Any] = {"model": name, "params": params}
            tried.append(entry)
            elapsed = time.perf_counter() - started
            if fitted and not len(users):
                entry["status"] = "skipped: no user has interactions to hold out"
                continue
            if fitted and elapsed > SEARCH_SHARE * budget:
                entry["status"] = "skipped: the search part of the time budget was spent"
                continue
            begun = time.perf_counter()
            try:
                model = create_model(name, **params).fit(inner)
            except (DataError, ModelError) as error:
                if not fitted and position == len(names) - 1:
                    raise
                entry["status"] = f"failed: {error}"
                logger.info("auto: %s failed on the inner split: %s", name, error)
                continue
            seconds = time.perf_counter() - begun
            entry["fit_s"] = round(seconds, 3)
            estimate = seconds * growth
            projected = time.perf_counter() - started + sum(refit_estimate.values()) + estimate
            if fitted and projected > budget:
                entry["status"] = "left out: its refit on all data would overrun the time budget"
                continue
            entry["status"] = "fitted"
            fitted[name] = model
            refit_estimate[name] = estimate
            progress.step(task, position + 1, len(names))
        if len(fitted) > 1 and len(users):
            pool = self._pool(fitted, inner, held_out, users)
            weights, blend_score, singles = self._learn_weights(pool)
        else:
            weights, blend_score, singles = {next(iter(fitted)): 1.0}, None, {}
        for entry in tried:
            if entry["model"] in singles:
                entry[f"inner_ndcg@{self.params.k}"] = round(singles[entry["model"]], 4)
        fitted.clear()  # free the inner models before the final fits
        self.weights_ = {role: weight for role, weight in weights.items() if weight > 0}
        search_s = time.perf_counter() - started
        super()._fit(dataset)
        self.metadata_["auto"] = {
            "time_budget_s": budget,
            "search_s": round(search_s, 3),
            "fit_s": round(time.perf_counter() - started, 3),
            "validation": {
                "fraction": self.params.validation_fraction,
                "seed": self.params.seed,
                "users": len(users),
                "events": len(held_out),
            },
            "metric": f"ndcg@{self.params.k}",
            "tried": tried,
            "weights": {role: round(weight, 4) for role, weight in weights.items()},
            f"inner_ndcg@{self.params.k}": None if blend_score is None else round(blend_score, 4),
            "chosen": self._roles(dataset),
        }

    def _candidates(self, dataset: Dataset) -> list[str]:
        """The families to try on ``dataset``, in order."""
        if self.params.candidates is not None:
            return list(self.params.candidates)
        linear = "ease" if self._dense_fits(dataset.n_items) else "sparse-ease"
        names = [linear, "als", "item-knn"]
        if dataset.item_features is not None:
            names.append("content")
        return names

    def _dense_fits(self, n_items: int) -> bool:
        """Whether two dense EASE fits (inner and final) fit the catalogue limit and the budget.

        Their cost is the cube of the catalogue: estimated from the time this machine takes to
        invert a 2048 x 2048 matrix the same way (only for catalogues large enough to matter;
        smaller probes run at a lower rate and overestimate).
        """
        if n_items > min(DENSE_ITEMS, MAX_ITEMS):
            return False
        if n_items <= 2 * PROBE_SIDE:
            return True
        rng = np.random.default_rng(0)
        probe = rng.random((PROBE_SIDE, PROBE_SIDE), dtype=np.float32)
        probe = probe @ probe.T + PROBE_SIDE * np.eye(PROBE_SIDE, dtype=np.float32)
        begun = time.perf_counter()
        upper, _ = lapack.spotrf(probe, lower=False, overwrite_a=True)
        lapack.spotri(upper, lower=False, overwrite_c=True)
        seconds = (time.perf_counter() - begun) * (n_items / PROBE_SIDE) ** 3
        return 2 * seconds <= DENSE_SHARE * self.params.time_budget

    def _validation_users(self, held_out: Dataset) -> npt.NDArray[np.int64]:
        """Users with held-out interactions, a seeded sample of ``validation_users`` at most."""
        users = np.unique(held_out.interactions["user"].to_numpy()).astype(np.int64)
        if len(users) > self.params.validation_users:
            rng = np.random.default_rng(self.params.seed)
            users = np.sort(rng.choice(users, size=self.params.validation_users, replace=False))
        return users

    def _pool(
        self,
        fitted: dict[str, Recommender],
        inner: Dataset,
        held_out: Dataset,
        users: npt.NDArray[np.int64],
    ) -> _Pool:
        """Each family's best :data:`POOL` unseen items per validation user, pooled, with every
        family's normalised scores at the pooled items."""
        seen = inner.matrix
        relevant = sp.csr_matrix(held_out.matrix[users], dtype=np.float32)
        relevant.data = np.ones_like(relevant.data)
        depth = min(POOL, inner.n_items)
        parts_items: list[npt.NDArray[np.int64]] = []
        parts_scores: dict[str, list[npt.NDArray[np.float32]]] = {name: [] for name in fitted}
        for start in range(0, len(users), CHUNK):
            chunk = users[start : start + CHUNK]
            mask = np.ones((len(chunk), inner.n_items), dtype=bool)
            mask[seen_entries(seen, chunk)] = False
            normalised = {
                name: normalise_scores(
                    np.asarray(model._score(chunk), dtype=np.float64), mask, self.params.normalise
                )
                for name, model in fitted.items()
            }
            tops = []
            for values in normalised.values():
                ranked = np.where(mask, values, -np.inf)
                tops.append(np.argpartition(-ranked, depth - 1, axis=1)[:, :depth])
            items = np.sort(np.concatenate(tops, axis=1), axis=1)
            parts_items.append(items)
            rows = np.arange(len(chunk))[:, None]
            for name, values in normalised.items():
                picked = np.where(mask[rows, items], values[rows, items], -np.inf)
                parts_scores[name].append(picked.astype(np.float32))
        items = np.concatenate(parts_items)
        duplicate = np.zeros(items.shape, dtype=bool)
        duplicate[:, 1:] = items[:, 1:] == items[:, :-1]
        hits = np.asarray(relevant[np.arange(len(users))[:, None], items].toarray(), dtype=bool)
        n_relevant = np.diff(relevant.indptr).astype(np.int64)
        return _Pool(
            items,
            duplicate,
            hits & ~duplicate,
            n_relevant,
            {name: np.concatenate(parts) for name, parts in parts_scores.items()},
        )

    def _inner_score(self, pool: _Pool, weights: dict[str, float]) -> float:
        """Mean NDCG@k over the validation users of the blend ``weights`` over the pool."""
        k = self.params.k
        total = np.zeros(pool.items.shape, dtype=np.float64)
        for name, weight in weights.items():
            if weight > 0:
                total += weight * pool.scores[name]
        total[pool.duplicate | ~np.isfinite(total)] = -np.inf
        # Pooled items are sorted per row, so top_k's ties (lower column first) go to the lower
        # item index, as in ``rank``; excluded entries come back as -1.
        top, _ = top_k(total, k)
        found = top >= 0
        hits = np.zeros((len(top), k), dtype=bool)
        hits[:, : top.shape[1]] = np.take_along_axis(pool.hits, np.where(found, top, 0), axis=1)
        hits[:, : top.shape[1]] &= found
        return float(ndcg_at_k(hits, pool.n_relevant, k).mean())

    def _learn_weights(self, pool: _Pool) -> tuple[dict[str, float], float, dict[str, float]]:
        """Coordinate ascent on the inner NDCG@k: the blend weights, its score, and each
        family's score alone."""
        singles = {name: self._inner_score(pool, {name: 1.0}) for name in pool.scores}
        best = max(singles, key=lambda name: (singles[name], -list(singles).index(name)))
        weights = {name: 1.0 if name == best else 0.0 for name in pool.scores}
        score = singles[best]
        for _ in range(ROUNDS):
            changed = False
            for name in weights:
                if name == best:
                    continue
                for value in WEIGHT_GRID:
                    if value == weights[name]:
                        continue
                    trial = {**weights, name: value}
                    trial_score = self._inner_score(pool, trial)
                    if trial_score > score + MIN_GAIN:
                        weights, score, changed = trial, trial_score, True
            if not changed:
                break
        return weights, score, singles

    # -- scoring and saving ------------------------------------------------------------------
    def _state(self) -> dict[str, npt.NDArray[Any]]:
        arrays = super()._state()
        arrays["weights"] = np.asarray(
            [self.weights_[role] for role in self.components_], dtype=np.float64
        )
        return arrays

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        super()._set_state(arrays)
        weights = arrays["weights"].tolist()
        if len(weights) != len(self.components_) or not all(
            math.isfinite(weight) and weight > 0 for weight in weights
        ):
            raise ValueError("the blend weights do not match the saved components")
        self.weights_ = dict(zip(self.components_, weights, strict=True))
