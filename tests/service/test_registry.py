"""The model registry on disk: versions, the atomic pointer, rollbacks, splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rekko.data.demo import load_demo
from rekko.errors import ModelError
from rekko.models.base import Recommender
from rekko.models.registry import create_model
from rekko.service.serving import bucket
from rekko.store.registry import ModelRegistry, VersionInfo


@pytest.fixture(scope="module")
def fitted() -> Recommender:
    return create_model("popularity").fit(load_demo(n_users=60, n_items=40, seed=1))


def _save(registry: ModelRegistry, model: Recommender, algorithm: str = "popularity") -> str:
    name = registry.new_version_name(algorithm)
    info = VersionInfo(
        version=name,
        algorithm=algorithm,
        created_at="2025-01-01T00:00:00+00:00",
        metrics={"ndcg@10": 0.1},
        data_fingerprint=model.metadata_["data_fingerprint"],
    )
    registry.save(model, info)
    return name


def test_versions_are_saved_listed_and_loaded(tmp_path: Path, fitted: Recommender) -> None:
    registry = ModelRegistry(tmp_path)
    first = _save(registry, fitted)
    second = _save(registry, fitted)
    assert [v.version for v in registry.list()] == sorted([first, second])
    loaded = registry.load(first)
    users = list(fitted.users_.external_ids[:3])
    assert np.array_equal(
        loaded.recommend(users, 5)["item_id"], fitted.recommend(users, 5)["item_id"]
    )
    info = registry.update_info(first, status="rejected", reason="worse")
    assert registry.info(first).reason == "worse" and info.status == "rejected"
    with pytest.raises(ModelError, match="already exists"):
        registry.save(fitted, registry.info(first))
    with pytest.raises(ModelError, match="invalid model version"):
        registry.info("../etc")


def test_a_failed_save_leaves_no_version(
    tmp_path: Path, fitted: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = ModelRegistry(tmp_path)

    def broken(directory: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(fitted, "save", broken)
    info = VersionInfo(version="v1", algorithm="popularity", created_at="now")
    with pytest.raises(OSError, match="disk full"):
        registry.save(fitted, info)
    assert registry.list() == []
    assert list(registry.versions_dir.iterdir()) == []


def test_activate_rollback_and_split(tmp_path: Path, fitted: Recommender) -> None:
    registry = ModelRegistry(tmp_path)
    assert registry.active is None
    with pytest.raises(ModelError, match="no earlier"):
        registry.rollback()
    first, second, third = (_save(registry, fitted) for _ in range(3))
    registry.activate(first)
    registry.activate(second)
    registry.activate(third)
    assert registry.pointer().history == [first, second]
    registry.set_split(first, 0.25)
    assert registry.pointer().split is not None
    with pytest.raises(ModelError, match="already the active"):
        registry.set_split(third, 0.5)
    assert registry.rollback().active == second
    assert registry.pointer().split is None  # a rollback ends the experiment
    assert registry.rollback().active == first
    with pytest.raises(ModelError, match="unknown model version"):
        registry.activate("nope")
    # The pointer file is complete JSON and no temporary files are left behind.
    assert json.loads((tmp_path / "active.json").read_text())["active"] == first
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_bucket_is_stable_and_roughly_uniform() -> None:
    values = [bucket(f"user-{i}", "v2") for i in range(4000)]
    assert values[:10] == [bucket(f"user-{i}", "v2") for i in range(10)]
    assert 0.45 < float(np.mean(values)) < 0.55
    assert 0.2 < float(np.mean(np.asarray(values) < 0.25)) < 0.3
