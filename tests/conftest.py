"""Shared fixtures. Real data comes from the folder named by REKKO_DATASETS."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rekko.data.dataset import Dataset
from rekko.data.demo import load_demo

SEED = 42


def datasets_root() -> Path:
    """The shared data sets folder: $REKKO_DATASETS, else ../shared/datasets beside the repo."""
    configured = os.environ.get("REKKO_DATASETS")
    root = (
        Path(configured)
        if configured
        else Path(__file__).resolve().parents[2] / "shared" / "datasets"
    )
    if not root.is_dir():
        pytest.fail(f"data sets folder {root} not found: set REKKO_DATASETS", pytrace=False)
    return root


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    return datasets_root()


@pytest.fixture(scope="session")
def bench_dir() -> Path:
    """The peers' splits and scorer: $REKKO_BENCH, else ../shared/bench beside the repo."""
    configured = os.environ.get("REKKO_BENCH")
    root = (
        Path(configured) if configured else Path(__file__).resolve().parents[2] / "shared" / "bench"
    )
    if not (root / "ml100k").is_dir():
        pytest.fail(f"bench folder {root} not found: set REKKO_BENCH", pytrace=False)
    return root


@pytest.fixture(scope="session")
def ml100k(datasets_dir: Path) -> Dataset:
    """MovieLens-100K with item and user features (read once per session; do not mutate)."""
    from rekko.data.loaders import load_movielens_100k

    return load_movielens_100k(datasets_dir / "ml-100k")


@pytest.fixture(scope="session")
def demo() -> Dataset:
    """The built-in demo shop (read-only)."""
    return load_demo()


@pytest.fixture(scope="session")
def small_demo() -> Dataset:
    """A smaller demo shop for tests that train many models."""
    return load_demo(n_users=120, n_items=80, seed=3)


@pytest.fixture
def shop_csv(tmp_path: Path) -> Path:
    """A small shop log in a CSV file: columns visitor, product, action (event types)."""
    path = tmp_path / "events.csv"
    pd.DataFrame(
        {
            "visitor": ["v1", "v1", "v2", "v2", "v3", "v3", "v3", "v4"],
            "product": ["p1", "p2", "p1", "p3", "p1", "p2", "p4", "p2"],
            "action": ["view", "addtocart", "view", "transaction", "view", "view", "view", "view"],
        }
    ).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def seed() -> int:
    """The seed of tests that train a model with one."""
    return SEED


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(SEED)


def assert_same_rankings(
    ours: pd.DataFrame,
    theirs: pd.DataFrame,
    *,
    key: str = "user_id",
    rtol: float = 1e-4,
    atol: float = 1e-5,
) -> None:
    """Two implementations' top-K lists (``key, item_id, rank, score``) agree up to ties.

    Scores computed in another order (another BLAS block, Spark, TensorFlow) differ in the last
    bits, so items whose scores are equal within the tolerance may trade places, or trade the
    last slot. Everything else must agree: the same number of rows per list, the same score at
    each rank, the same score for every item both lists hold, and any item only one list holds
    scored like that list's last slot.
    """
    assert set(ours[key]) == set(theirs[key]), "the lists are for different keys"

    def close(a: float, b: float) -> bool:
        return abs(a - b) <= atol + rtol * abs(b)

    for owner, mine in ours.groupby(key, sort=False):
        other = theirs[theirs[key] == owner]
        mine, other = mine.sort_values("rank"), other.sort_values("rank")
        assert len(mine) == len(other), f"{key} {owner}: {len(mine)} rows vs {len(other)}"
        if mine.empty:
            continue
        np.testing.assert_allclose(
            mine["score"].to_numpy(float), other["score"].to_numpy(float), rtol=rtol, atol=atol
        )
        a = dict(zip(mine["item_id"], mine["score"].astype(float), strict=True))
        b = dict(zip(other["item_id"], other["score"].astype(float), strict=True))
        for item in a.keys() & b.keys():
            assert close(a[item], b[item]), (
                f"{key} {owner}: item {item} scored {a[item]} vs {b[item]}"
            )
        last_a, last_b = float(mine["score"].iloc[-1]), float(other["score"].iloc[-1])
        for item in a.keys() - b.keys():
            assert close(a[item], last_b), f"{key} {owner}: {item} only in the first list"
        for item in b.keys() - a.keys():
            assert close(b[item], last_a), f"{key} {owner}: {item} only in the second list"


@pytest.fixture(scope="session")
def same_rankings() -> Callable[..., None]:
    """:func:`assert_same_rankings`, for tests that compare two implementations."""
    return assert_same_rankings
