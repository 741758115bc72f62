"""Run several models on the same split and compare them in one table.

Protocol (the usual one for top-K recommendation, stated so numbers can be compared):

* every model trains on the same ``train`` part and ranks the **full catalogue** for each test
  user, with the user's training items excluded;
* relevant items are the user's test items (for explicit data optionally only those rated at
  least ``relevance_threshold``);
* ranking metrics are averaged over test users that have training data; the others are counted
  in ``cold_users`` and left out (a collaborative model cannot rank for them);
* RMSE and MAE are computed on the test pairs for models that predict ratings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from rekko import progress
from rekko.data.dataset import Dataset
from rekko.data.splits import RandomSplit, Split
from rekko.errors import DataError
from rekko.evaluation import metrics as m
from rekko.models.base import Recommender

logger = logging.getLogger(__name__)

DEFAULT_METRICS: tuple[str, ...] = (
    "precision",
    "recall",
    "ndcg",
    "map",
    "map_truncated",
    "mrr",
    "hit_rate",
)


@dataclass(frozen=True)
class Protocol:
    """What to measure: cut-offs, ranking metrics and the relevance rule."""

    ks: tuple[int, ...] = (10,)
    metrics: tuple[str, ...] = DEFAULT_METRICS
    relevance_threshold: float | None = None
    beyond_accuracy: bool = True

    def __post_init__(self) -> None:
        unknown = set(self.metrics) - set(m.RANKING_METRICS)
        if unknown:
            raise ValueError(
                f"unknown metric(s) {sorted(unknown)} (known: {sorted(m.RANKING_METRICS)})"
            )
        if not self.ks or min(self.ks) < 1:
            raise ValueError("ks must hold cut-offs of at least 1")


@dataclass
class TestSet:
    """The evaluation view of a test part: users, their relevant items, rating pairs."""

    users: npt.NDArray[np.int64]
    relevant: sp.csr_matrix  # rows align with ``users``
    cold_users: int
    pairs: pd.DataFrame = field(repr=False)

    @classmethod
    def build(cls, train: Dataset, test: Dataset, threshold: float | None) -> TestSet:
        frame = test.interactions
        if threshold is not None:
            frame = frame[frame["value"] >= threshold]
        train_counts = np.bincount(train.interactions["user"].to_numpy(), minlength=train.n_users)
        test_users = np.unique(frame["user"].to_numpy())
        warm = test_users[train_counts[test_users] > 0]
        matrix = sp.csr_matrix(
            (
                np.ones(len(frame), dtype=np.float32),
                (frame["user"].to_numpy(), frame["item"].to_numpy()),
            ),
            shape=(test.n_users, test.n_items),
        )
        return cls(warm, matrix[warm], len(test_users) - len(warm), test.interactions)


def _item_categories(dataset: Dataset) -> sp.csr_matrix | None:
    """Binary item x label matrix from categorical and multi-valued features (for diversity)."""
    features = dataset.item_features
    if features is None:
        return None
    columns = features.columns_of("categorical", "multi")
    if not columns:
        return None
    rows: list[int] = []
    labels: list[str] = []
    for name in columns:
        for item, value in enumerate(features.frame[name]):
            values = value if isinstance(value, tuple) else (() if value is None else (value,))
            for label in values:
                rows.append(item)
                labels.append(f"{name}={label}")
    codes, uniques = pd.factorize(pd.Series(labels, dtype=object))
    return sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (np.asarray(rows), codes)),
        shape=(dataset.n_items, len(uniques)),
    )


def _ranking_row(
    recommended: npt.NDArray[np.int64], relevant: sp.csr_matrix, protocol: Protocol
) -> dict[str, float]:
    hits = m.hit_matrix(recommended, relevant)
    n_relevant = m.count_relevant(relevant)
    row: dict[str, float] = {}
    for k in protocol.ks:
        for name in protocol.metrics:
            row[f"{name}@{k}"] = float(np.mean(m.RANKING_METRICS[name](hits, n_relevant, k)))
        row[f"top_k_accuracy@{k}"] = m.top_k_categorical_accuracy(hits, n_relevant, k)
    return row


def score_rankings(
    recommended: npt.NDArray[np.int64],
    tests: TestSet,
    train: Dataset,
    protocol: Protocol,
) -> dict[str, float]:
    """Ranking and beyond-accuracy metrics of index rankings for ``tests.users``."""
    row = _ranking_row(recommended, tests.relevant, protocol)
    if protocol.beyond_accuracy:
        k = max(protocol.ks)
        row[f"coverage@{k}"] = m.catalog_coverage(recommended, train.n_items, k)
        row[f"novelty@{k}"] = m.novelty(recommended, train.item_popularity, train.n_users, k)
        row[f"popularity@{k}"] = m.popularity_bias(recommended, train.item_popularity, k)
        categories = _item_categories(train)
        if categories is not None:
            row[f"diversity@{k}"] = m.intra_list_diversity(recommended, categories, k)
    return row


def evaluate(
    models: Mapping[str, Recommender] | Sequence[Recommender],
    dataset: Dataset | None = None,
    split: Split | None = None,
    *,
    train: Dataset | None = None,
    test: Dataset | None = None,
    protocol: Protocol | None = None,
) -> pd.DataFrame:
    """Fit each model on the same training part and score it: one row per model.

    Give either ``dataset`` (split with ``split``, default per-user random 80/20, seed 42) or
    an explicit ``train`` and ``test`` that share id maps (as a split's parts do). Columns:
    ``model``, ranking metrics at each K, ``top_k_accuracy@K``, ``coverage@K``, ``novelty@K``,
    ``popularity@K``, ``diversity@K`` (with item categories), ``rmse`` and ``mae`` (for
    rating models on explicit data), ``fit_s``, ``recommend_s``, ``users``, ``cold_users``.
    """
    protocol = protocol or Protocol()
    if train is None or test is None:
        if dataset is None:
            raise ValueError("evaluate needs a dataset, or both train and test")
        train, test = (split or RandomSplit()).split(dataset)
    named = dict(models) if isinstance(models, Mapping) else label_models(models)
    tests = TestSet.build(train, test, protocol.relevance_threshold)
    rows = []
    for number, (label, model) in enumerate(named.items()):
        progress.step("models evaluated", number, len(named))
        started = time.perf_counter()
        model.fit(train)
        fitted = time.perf_counter()
        recommended = model.rank(tests.users, max(protocol.ks)).items
        ranked = time.perf_counter()
        row: dict[str, float | str | int] = {"model": label}
        row.update(score_rankings(recommended, tests, train, protocol))
        if model.abilities.explicit and train.explicit:
            pairs = tests.pairs
            predicted = model.predict_indices(pairs["user"].to_numpy(), pairs["item"].to_numpy())
            actual = pairs["value"].to_numpy(dtype=np.float64)
            row["rmse"] = m.rmse(predicted.astype(np.float64), actual)
            row["mae"] = m.mae(predicted.astype(np.float64), actual)
        row["fit_s"] = fitted - started
        row["recommend_s"] = ranked - fitted
        row["users"] = len(tests.users)
        row["cold_users"] = tests.cold_users
        logger.info("evaluated %s: %s", label, row)
        rows.append(row)
    progress.step("models evaluated", len(named), len(named))
    return pd.DataFrame(rows)


def label_models(models: Iterable[Recommender]) -> dict[str, Recommender]:
    """Models by name; a repeated name gets ``-2``, ``-3``..."""
    out: dict[str, Recommender] = {}
    for model in models:
        label, number = model.name, 2
        while label in out:
            label, number = f"{model.name}-{number}", number + 1
        out[label] = model
    return out


def evaluate_recommendations(
    recommendations: pd.DataFrame,
    truth: pd.DataFrame,
    *,
    protocol: Protocol | None = None,
    train: pd.DataFrame | None = None,
) -> dict[str, float]:
    """Score a recommendation list given as external ids (as ``rekko recommend`` writes).

    ``recommendations`` has ``user_id``, ``item_id`` and ``rank`` (1 is best); ``truth`` has
    ``user_id`` and ``item_id`` of the test items, and ``rating`` or ``value`` when the
    protocol has a ``relevance_threshold`` (items below it are not relevant, and users left
    with none are not scored, as :func:`evaluate` does). Users in ``truth`` that have no
    recommendations count as all misses. Ids are compared as strings.

    With the ``train`` interactions (``user_id``, ``item_id``) and ``protocol.beyond_accuracy``
    it also gives ``coverage@K`` (share of the catalogue, the training and test items,
    recommended), ``novelty@K`` and ``popularity@K`` (from how many training users had each
    item) at the largest K, as :func:`evaluate` does on the same split; recommended items
    outside the catalogue count for none of them.
    """
    protocol = protocol or Protocol(beyond_accuracy=False)
    frames: list[tuple[str, pd.DataFrame, tuple[str, ...]]] = [
        ("recommendations", recommendations, ("user_id", "item_id", "rank")),
        ("truth", truth, ("user_id", "item_id")),
    ]
    if train is not None:
        frames.append(("train", train, ("user_id", "item_id")))
    for name, frame, needed in frames:
        missing = [column for column in needed if column not in frame.columns]
        if missing:
            raise DataError(f"{name} lacks column(s) {missing}")
    ranks = pd.to_numeric(recommendations["rank"], errors="coerce")
    if ranks.isna().any():
        raise DataError("recommendations: column 'rank' must hold numbers (1 is best)")
    recs = recommendations.assign(
        user_id=recommendations["user_id"].astype(str),
        item_id=recommendations["item_id"].astype(str),
        rank=ranks,
    )
    # The catalogue (the training and test items, as a split's data set has them) first, so
    # that an index below its size is a catalogue item.
    catalogue = pd.Index([], dtype=object)
    if train is not None:
        known = pd.concat([train["item_id"], truth["item_id"]]).astype(str)
        catalogue = pd.Index(known.unique())
    truth = _relevant(truth, protocol.relevance_threshold)
    truth = truth.assign(user_id=truth["user_id"].astype(str), item_id=truth["item_id"].astype(str))
    users = pd.Index(truth["user_id"].unique())
    others = pd.Index(pd.concat([truth["item_id"], recs["item_id"]]).unique())
    items = catalogue.append(others.difference(catalogue, sort=False))
    k = max(protocol.ks)
    recs = recs[recs["user_id"].isin(users)].sort_values(["user_id", "rank"])
    recs = recs.assign(position=recs.groupby("user_id").cumcount())
    recs = recs[recs["position"] < k]
    recommended = np.full((len(users), k), -1, dtype=np.int64)
    recommended[users.get_indexer(recs["user_id"]), recs["position"].to_numpy()] = (
        items.get_indexer(recs["item_id"])
    )
    relevant = sp.csr_matrix(
        (
            np.ones(len(truth), dtype=np.float32),
            (users.get_indexer(truth["user_id"]), items.get_indexer(truth["item_id"])),
        ),
        shape=(len(users), len(items)),
    )
    relevant.sum_duplicates()
    relevant.data[:] = 1
    row = _ranking_row(recommended, relevant, protocol)
    if train is not None and protocol.beyond_accuracy and len(catalogue):
        listed = np.where(recommended < len(catalogue), recommended, -1)
        pairs = train.assign(
            user_id=train["user_id"].astype(str), item_id=train["item_id"].astype(str)
        )
        popularity = (  # distinct training users per catalogue item
            pairs.drop_duplicates(["user_id", "item_id"])
            .groupby("item_id")
            .size()
            .reindex(catalogue, fill_value=0)
            .to_numpy(dtype=np.float64)
        )
        n_users = int(pairs["user_id"].nunique())
        row[f"coverage@{k}"] = m.catalog_coverage(listed, len(catalogue), k)
        row[f"novelty@{k}"] = m.novelty(listed, popularity, n_users, k)
        row[f"popularity@{k}"] = m.popularity_bias(listed, popularity, k)
    row["users"] = float(len(users))
    return row


def _relevant(truth: pd.DataFrame, threshold: float | None) -> pd.DataFrame:
    """The rows of ``truth`` whose ``rating`` (else ``value``) reaches ``threshold``."""
    if threshold is None:
        return truth
    column = next((name for name in ("rating", "value") if name in truth.columns), None)
    if column is None:
        raise DataError(
            f"truth lacks a 'rating' or 'value' column to compare with the relevance threshold "
            f"{threshold:g} (columns: {', '.join(map(str, truth.columns))})"
        )
    strength = pd.to_numeric(truth[column], errors="coerce")
    if strength.isna().any():
        raise DataError(f"truth: column {column!r} must hold numbers for the relevance threshold")
    return truth[strength >= threshold]
