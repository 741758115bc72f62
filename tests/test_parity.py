"""One ranking path: the library, the HTTP service and the exported SavedModel give the same
top-10 (items and scores, seen items left out) for the same trained model and users."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from rekko.data.dataset import Dataset
from rekko.errors import ModelError
from rekko.export import export_savedmodel
from rekko.models import Recommender, create_model
from rekko.service import create_app
from rekko.service.testing import settings_for
from rekko.store.registry import ModelRegistry, VersionInfo

pytest.importorskip("tensorflow")

K = 10
#: Models that export a retrieval SavedModel, trained briefly.
MODELS: dict[str, dict[str, Any]] = {
    "als": {"factors": 16, "iterations": 5},
    "neural-mf": {"max_epochs": 5, "deterministic": True},
    "two-tower": {"max_epochs": 5, "deterministic": True},
}
#: Models with no export contract (no user and item vectors): library and service.
NOT_EXPORTED: dict[str, dict[str, Any]] = {"ease": {}}


@pytest.fixture(scope="module")
def models(small_demo: Dataset, seed: int) -> dict[str, Recommender]:
    trained = {name: create_model(name, **params, seed=seed) for name, params in MODELS.items()}
    trained.update({name: create_model(name, **params) for name, params in NOT_EXPORTED.items()})
    return {name: model.fit(small_demo) for name, model in trained.items()}


@pytest.fixture(scope="module")
def users(small_demo: Dataset) -> list[str]:
    """Every user of the shop: light and heavy ones, and any who has seen nearly everything."""
    return [str(user) for user in small_demo.users.external_ids]


@pytest.fixture(scope="module")
def client(
    models: dict[str, Recommender], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """An app whose registry holds each model as a version (the version is its name)."""
    folder = tmp_path_factory.mktemp("service")
    settings = settings_for(folder, bootstrap_demo=False, log_impressions=False)
    registry = ModelRegistry(settings.model_dir)
    for name, model in models.items():
        registry.save(model, VersionInfo(version=name, algorithm=name, created_at="now"))
    registry.activate(next(iter(models)))
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _frame(users: list[str], item_ids: list[list[str]], scores: list[list[float]]) -> pd.DataFrame:
    """Lists per user as ``user_id, item_id, rank, score``, empty slots left out."""
    rows = [
        (user, item, rank, score)
        for user, items, values in zip(users, item_ids, scores, strict=True)
        for rank, (item, score) in enumerate(
            ((item, score) for item, score in zip(items, values, strict=True) if item), start=1
        )
    ]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rank", "score"])


def _library(model: Recommender, users: list[str]) -> pd.DataFrame:
    return model.recommend(users, K).astype({"user_id": str, "item_id": str})


def _service(client: TestClient, version: str, users: list[str]) -> pd.DataFrame:
    item_ids, scores = [], []
    for user in users:
        response = client.post(
            "/recommendations", json={"user_id": user, "k": K, "version": version}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model_version"] == version and body["fallback"] is None
        item_ids.append([item["item_id"] for item in body["items"]])
        scores.append([item["score"] for item in body["items"]])
    return _frame(users, item_ids, scores)


def _savedmodel(model: Recommender, folder: Path, users: list[str]) -> pd.DataFrame:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(export_savedmodel(model, folder)))
    out = loaded.signatures["serving_default"](user_ids=tf.constant(users))
    assert out["known"].numpy().all()
    item_ids = [[item.decode() for item in row] for row in out["item_ids"].numpy()]
    return _frame(users, item_ids, out["scores"].numpy().tolist())


def _seen(data: Dataset) -> set[tuple[str, str]]:
    frame = data.to_frame()
    return set(zip(frame["user_id"].astype(str), frame["item_id"].astype(str), strict=True))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_recommend_the_service_and_the_savedmodel_agree(
    name: str,
    models: dict[str, Recommender],
    users: list[str],
    client: TestClient,
    small_demo: Dataset,
    tmp_path: Path,
    same_rankings: Callable[..., None],
) -> None:
    library = _library(models[name], users)
    service = _service(client, name, users)
    exported = _savedmodel(models[name], tmp_path / "savedmodel", users)

    seen = _seen(small_demo)
    for answer in (library, service, exported):
        assert set(answer["user_id"]) <= set(users)
        assert answer.groupby("user_id").size().le(K).all()
        pairs = set(zip(answer["user_id"], answer["item_id"], strict=True))
        assert not pairs & seen, "a seen item was recommended"
    assert len(library) > 0.9 * K * len(users)
    # The service ranks the model saved to and loaded from its registry; the SavedModel
    # scores in TensorFlow. Items whose scores are equal within float error may trade places.
    same_rankings(service, library, rtol=1e-5, atol=1e-6)
    same_rankings(exported, library, rtol=1e-4, atol=1e-5)
    assert np.isfinite(library["score"]).all()


@pytest.mark.parametrize("name", sorted(NOT_EXPORTED))
def test_recommend_and_the_service_agree(
    name: str,
    models: dict[str, Recommender],
    users: list[str],
    client: TestClient,
    tmp_path: Path,
    same_rankings: Callable[..., None],
) -> None:
    with pytest.raises(ModelError, match="cannot be exported"):
        export_savedmodel(models[name], tmp_path / "savedmodel")
    same_rankings(
        _service(client, name, users), _library(models[name], users), rtol=1e-5, atol=1e-6
    )
