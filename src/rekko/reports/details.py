"""Evaluate models like :func:`rekko.evaluation.evaluate`, keeping what a report needs.

Besides the usual table this keeps per-user metric values (for standard errors and error bars)
and every metric at each cut-off ``k = 1..K`` (for metric-vs-K curves). It reuses the
evaluation's :class:`~rekko.evaluation.evaluate.TestSet` and
:func:`~rekko.evaluation.evaluate.score_rankings`, so its numbers are those of ``evaluate``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from rekko import progress
from rekko.data.dataset import Dataset
from rekko.data.splits import RandomSplit, Split
from rekko.evaluation import metrics as m
from rekko.evaluation.evaluate import Protocol, TestSet, label_models, score_rankings
from rekko.models.base import Recommender

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

#: Columns :func:`evaluate_with_details` adds: the data's own average popularity.
REFERENCE_COLUMNS: tuple[str, ...] = ("data_popularity", "catalogue_popularity")


@dataclass(frozen=True)
class EvaluationDetails:
    """What :func:`evaluate_with_details` measured.

    Attributes:
        table: :func:`rekko.evaluation.evaluate`'s table plus ``<metric>@<k>_se`` (standard
            error of the per-user mean) for each ranking metric, and ``data_popularity`` (mean
            popularity of the test users' training items, averaged per user like
            ``popularity@K``) and ``catalogue_popularity`` (mean over all items).
        curves: one row per ``model``, ``metric``, ``k`` (1..max K) with ``value`` and ``se``
            (NaN for coverage, which is not a per-user mean).
        per_user: model -> ``"<metric>@<k>"`` -> values for each evaluated user, aligned with
            ``users``.
        users: indices of the evaluated (warm) test users.
    """

    table: pd.DataFrame
    curves: pd.DataFrame
    per_user: Mapping[str, Mapping[str, FloatArray]]
    users: npt.NDArray[np.int64]

    @property
    def metrics(self) -> pd.DataFrame:
        """The table with exactly :func:`rekko.evaluation.evaluate`'s columns (for printing)."""
        extra = [
            column
            for column in self.table.columns
            if str(column).endswith("_se") or column in REFERENCE_COLUMNS
        ]
        return self.table.drop(columns=extra)


def standard_error(values: FloatArray) -> float:
    """Standard error of the mean of ``values`` (NaN with fewer than two values)."""
    if len(values) < 2:
        return math.nan
    return float(np.std(values, ddof=1) / math.sqrt(len(values)))


def evaluate_with_details(
    models: Mapping[str, Recommender] | Sequence[Recommender],
    dataset: Dataset | None = None,
    split: Split | None = None,
    *,
    train: Dataset | None = None,
    test: Dataset | None = None,
    protocol: Protocol | None = None,
) -> EvaluationDetails:
    """Fit and score each model like :func:`rekko.evaluation.evaluate`, keeping the details.

    Same inputs and protocol (full-catalogue ranking, training items excluded, warm test users
    only); the table has the same columns plus standard errors and reference popularities.
    """
    protocol = protocol or Protocol()
    if train is None or test is None:
        if dataset is None:
            raise ValueError("evaluate_with_details needs a dataset, or both train and test")
        train, test = (split or RandomSplit()).split(dataset)
    named = dict(models) if isinstance(models, Mapping) else label_models(models)
    tests = TestSet.build(train, test, protocol.relevance_threshold)
    n_relevant = m.count_relevant(tests.relevant)
    max_k = max(protocol.ks)
    references = _reference_popularity(train, tests.users) if protocol.beyond_accuracy else {}
    rows: list[dict[str, float | str | int]] = []
    curves: list[dict[str, float | str | int]] = []
    per_user: dict[str, dict[str, FloatArray]] = {}
    for number, (label, model) in enumerate(named.items()):
        progress.step("models evaluated", number, len(named))
        started = time.perf_counter()
        model.fit(train)
        fitted = time.perf_counter()
        recommended = model.rank(tests.users, max_k).items
        ranked = time.perf_counter()
        row: dict[str, float | str | int] = {"model": label}
        row.update(score_rankings(recommended, tests, train, protocol))
        hits = m.hit_matrix(recommended, tests.relevant)
        values: dict[str, FloatArray] = {}
        for name in protocol.metrics:
            metric = m.RANKING_METRICS[name]
            for k in range(1, max_k + 1):
                scores = metric(hits, n_relevant, k)
                se = standard_error(scores)
                curves.append(
                    {
                        "model": label,
                        "metric": name,
                        "k": k,
                        "value": float(scores.mean()),
                        "se": se,
                    }
                )
                if k in protocol.ks:
                    values[f"{name}@{k}"] = scores
                    row[f"{name}@{k}_se"] = se
        if protocol.beyond_accuracy:
            for k in range(1, max_k + 1):
                coverage = m.catalog_coverage(recommended, train.n_items, k)
                curves.append(
                    {
                        "model": label,
                        "metric": "coverage",
                        "k": k,
                        "value": coverage,
                        "se": math.nan,
                    }
                )
        if model.abilities.explicit and train.explicit:
            row.update(_rating_errors(model, tests, train))
        row["fit_s"] = fitted - started
        row["recommend_s"] = ranked - fitted
        row["users"] = len(tests.users)
        row["cold_users"] = tests.cold_users
        row.update(references)
        logger.info("evaluated %s with details", label)
        rows.append(row)
        per_user[label] = values
    curve_frame = pd.DataFrame(curves, columns=["model", "metric", "k", "value", "se"])
    return EvaluationDetails(pd.DataFrame(rows), curve_frame, per_user, tests.users)


def _rating_errors(model: Recommender, tests: TestSet, train: Dataset) -> dict[str, float]:
    pairs = tests.pairs
    users = train.users.to_external(pairs["user"].to_numpy()).tolist()
    items = train.items.to_external(pairs["item"].to_numpy()).tolist()
    predicted = model.predict(users, items).astype(np.float64)
    actual = pairs["value"].to_numpy(dtype=np.float64)
    return {"rmse": m.rmse(predicted, actual), "mae": m.mae(predicted, actual)}


def _reference_popularity(train: Dataset, users: npt.NDArray[np.int64]) -> dict[str, float]:
    """The data's own average popularity, to read ``popularity@K`` against."""
    popularity = np.asarray(train.item_popularity, dtype=np.float64)
    frame = train.interactions
    chosen = frame[np.isin(frame["user"].to_numpy(), users)]
    per_user = (
        pd.Series(popularity[chosen["item"].to_numpy()]).groupby(chosen["user"].to_numpy()).mean()
    )
    return {
        "data_popularity": float(per_user.mean()) if len(per_user) else math.nan,
        "catalogue_popularity": float(popularity.mean()) if len(popularity) else math.nan,
    }
