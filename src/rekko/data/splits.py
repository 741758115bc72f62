"""Train/test splits of a :class:`Dataset`.

All splits work on the aggregated (user, item) pairs, so a pair is never in both parts. Train
and test share the id maps and feature tables of the full data set.

What happens to users and items that end up only in the test part:

* per-user splits (:class:`RandomSplit`, :class:`LeaveLastOut`) keep every user in training:
  users with fewer than ``min_train + 1`` interactions stay entirely in training;
* :class:`TemporalSplit` cuts at one moment for everyone, so some test users and items are
  new. Evaluation scores ranking metrics on the test users that have training data and
  reports the others as ``cold_users`` (see :func:`rekko.evaluation.evaluate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from rekko.data.dataset import Dataset
from rekko.errors import DataError


class Split(Protocol):
    """Anything that divides a data set into ``(train, test)``."""

    def split(self, dataset: Dataset) -> tuple[Dataset, Dataset]: ...


def _parts(dataset: Dataset, test: npt.NDArray[np.bool_]) -> tuple[Dataset, Dataset]:
    if not test.any():
        raise DataError("the split left no test interactions (data set too small?)")
    if test.all():
        raise DataError("the split left no training interactions")
    return (
        dataset.subset(~test, name=f"{dataset.name}-train"),
        dataset.subset(test, name=f"{dataset.name}-test"),
    )


@dataclass(frozen=True)
class RandomSplit:
    """Per user, a random ``test_fraction`` of their interactions goes to test.

    Each user with at least ``min_train + 1`` interactions gets ``round(n * test_fraction)``
    test interactions (at least one, and never more than ``n - min_train``).
    """

    test_fraction: float = 0.2
    seed: int = 42
    min_train: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.test_fraction < 1:
            raise DataError(f"test_fraction must be between 0 and 1, got {self.test_fraction}")

    def split(self, dataset: Dataset) -> tuple[Dataset, Dataset]:
        rng = np.random.default_rng(self.seed)
        users = dataset.interactions["user"].to_numpy()
        # A random key per row, then rank rows within each user by it.
        order = np.lexsort((rng.random(len(users)), users))
        sorted_users = users[order]
        starts = np.r_[0, np.flatnonzero(np.diff(sorted_users)) + 1]
        counts = np.diff(np.r_[starts, len(users)])
        rank = np.arange(len(users)) - np.repeat(starts, counts)
        n_test = np.minimum(
            np.maximum(np.rint(counts * self.test_fraction), 1), counts - self.min_train
        )
        n_test = np.where(counts > self.min_train, n_test, 0)
        test = np.zeros(len(users), dtype=bool)
        test[order] = rank < np.repeat(n_test, counts)
        return _parts(dataset, test)


@dataclass(frozen=True)
class LeaveLastOut:
    """Each user's latest ``n`` interactions (by timestamp) go to test.

    Users with ``n`` interactions or fewer stay in training. Without timestamps the order of
    the source rows decides.
    """

    n: int = 1

    def __post_init__(self) -> None:
        if self.n < 1:
            raise DataError(f"leave-last-out needs n >= 1, got {self.n}")

    def split(self, dataset: Dataset) -> tuple[Dataset, Dataset]:
        frame = dataset.interactions
        users = frame["user"].to_numpy()
        if dataset.has_timestamps:
            time = frame["timestamp"].to_numpy()
        elif "sequence" in frame.columns:
            time = frame["sequence"].to_numpy()
        else:
            time = np.arange(len(frame))
        # Latest first within each user; ties broken by row order (later row is "later").
        order = np.lexsort((-np.arange(len(frame)), -time, users))
        sorted_users = users[order]
        starts = np.r_[0, np.flatnonzero(np.diff(sorted_users)) + 1]
        counts = np.diff(np.r_[starts, len(users)])
        rank = np.arange(len(users)) - np.repeat(starts, counts)
        test = np.zeros(len(users), dtype=bool)
        test[order] = (rank < self.n) & (np.repeat(counts, counts) > self.n)
        return _parts(dataset, test)


@dataclass(frozen=True)
class TemporalSplit:
    """Everything at or after one moment goes to test.

    The moment is ``cutoff`` (unix seconds) if given, else the time below which
    ``1 - test_fraction`` of the interactions fall.
    """

    test_fraction: float = 0.2
    cutoff: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.test_fraction < 1:
            raise DataError(f"test_fraction must be between 0 and 1, got {self.test_fraction}")

    def split(self, dataset: Dataset) -> tuple[Dataset, Dataset]:
        if not dataset.has_timestamps:
            raise DataError("a temporal split needs timestamps in the data")
        time = dataset.interactions["timestamp"].to_numpy()
        cutoff = (
            self.cutoff
            if self.cutoff is not None
            else int(np.quantile(time, 1 - self.test_fraction, method="higher"))
        )
        return _parts(dataset, time >= cutoff)


def make_split(kind: str, *, test_fraction: float = 0.2, seed: int = 42, n: int = 1) -> Split:
    """A split by name: ``random``, ``temporal`` or ``leave-last-out``."""
    if kind == "random":
        return RandomSplit(test_fraction=test_fraction, seed=seed)
    if kind == "temporal":
        return TemporalSplit(test_fraction=test_fraction)
    if kind in ("leave-last-out", "loo"):
        return LeaveLastOut(n=n)
    raise DataError(f"unknown split {kind!r} (use random, temporal or leave-last-out)")
