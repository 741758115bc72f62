"""Shared fixtures. Real data comes from the folder named by REKKO_DATASETS."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
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
def rng() -> np.random.Generator:
    return np.random.default_rng(SEED)
