"""Exports: SavedModels answer with TensorFlow alone, TFLite files match Keras, manifests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from rekko.data.dataset import Dataset
from rekko.errors import ModelError
from rekko.export import (
    export_model,
    export_savedmodel,
    export_tflite,
    read_manifest,
    run_tflite,
)
from rekko.models import Recommender, create_model
from rekko.models._tf import pad_rows
from rekko.models.contract import ExportContract

FAST = {"max_epochs": 8}
RETRIEVAL = ("two-tower", "neural-mf", "multitask")
RANKING = ("ranking", "neural-mlp")

#: Runs in a fresh interpreter: plain TensorFlow, no rekko, answers as JSON on stdout.
PLAIN_TF = """
import json, sys
import tensorflow as tf
requests = json.loads(sys.stdin.read())
answers = {}
for name, request in requests.items():
    model = tf.saved_model.load(request["folder"])
    if request["kind"] == "retrieval":
        default = model.signatures["serving_default"](user_ids=tf.constant(request["users"]))
        top = model.signatures["top_k"](user_ids=tf.constant(request["users"]), k=tf.constant(3))
        custom = model.signatures["recommend"](
            user_ids=tf.constant(request["users"]),
            k=tf.constant(request["k"]),
            exclude=tf.constant(request["exclude"], dtype=tf.string),
            exclude_seen=tf.constant(False),
        )
        answers[name] = {
            label: {
                "item_ids": [[v.decode() for v in row] for row in out["item_ids"].numpy()],
                "scores": out["scores"].numpy().tolist(),
                "known": out["known"].numpy().tolist(),
            }
            for label, out in (("default", default), ("top", top), ("custom", custom))
        }
    else:
        out = model.signatures["serving_default"](
            user_ids=tf.constant(request["users"]), item_ids=tf.constant(request["items"])
        )
        answers[name] = {"scores": out["scores"].numpy().tolist()}
assert "rekko" not in sys.modules
print(json.dumps(answers))
"""


@pytest.fixture(scope="module")
def data(small_demo: Dataset) -> Dataset:
    return small_demo


@pytest.fixture(scope="module")
def models(data: Dataset) -> dict[str, Recommender]:
    return {
        "two-tower": create_model("two-tower", user_features=True, **FAST).fit(data),
        "neural-mf": create_model("neural-mf", **FAST).fit(data),
        "multitask": create_model("multitask", **FAST).fit(data),
        "ranking": create_model("ranking", **FAST).fit(data),
        "neural-mlp": create_model("neural-mlp", **FAST).fit(data),
    }


@pytest.fixture(scope="module")
def saved(models: dict[str, Recommender], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("savedmodels")
    for name, model in models.items():
        export_savedmodel(model, root / name)
    return root


def _contract(model: Recommender) -> ExportContract:
    contract = model.export_contract()
    assert contract is not None
    return contract


def _users(data: Dataset) -> list[str]:
    return [str(u) for u in data.users.external_ids[:12]] + ["someone-new"]


def _plain_tf(requests: dict[str, Any]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-I", "-c", PLAIN_TF],
        input=json.dumps(requests),
        capture_output=True,
        text=True,
        cwd="/",
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answers: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answers


def _same_ranking(
    ids: list[str], scores: list[float], expected: pd.DataFrame, atol: float = 1e-5
) -> None:
    """Same scores at each rank; same items except the order within near-ties."""
    valid = [i for i, item in enumerate(ids) if item]
    np.testing.assert_allclose(
        np.asarray(scores)[valid], expected["score"].to_numpy(), rtol=1e-5, atol=atol
    )
    got = [ids[i] for i in valid]
    want = expected["item_id"].astype(str).tolist()
    assert len(got) == len(want)
    values = expected["score"].to_numpy()
    start = 0
    for end in range(1, len(want) + 1):
        if end == len(want) or values[end - 1] - values[end] > atol:
            assert set(got[start:end]) == set(want[start:end])
            start = end


@pytest.fixture(scope="module")
def answers(saved: Path, models: dict[str, Recommender], data: Dataset) -> dict[str, Any]:
    users = _users(data)
    requests: dict[str, Any] = {}
    items = [str(i) for i in data.items.external_ids[:12]]
    for name in RETRIEVAL:
        requests[name] = {
            "folder": str(saved / name),
            "kind": "retrieval",
            "users": users,
            "k": 6,
            "exclude": [*items[:4], "no-such-item"],
        }
    for name in RANKING:
        requests[name] = {
            "folder": str(saved / name),
            "kind": "ranking",
            "users": users[:12],
            "items": items,
        }
    return _plain_tf(requests)


@pytest.mark.parametrize("name", RETRIEVAL)
def test_savedmodel_recommends_like_rekko_with_tensorflow_alone(
    name: str, answers: dict[str, Any], models: dict[str, Recommender], data: Dataset
) -> None:
    model = models[name]
    users = _users(data)
    default = answers[name]["default"]
    assert default["known"] == [True] * 12 + [False]
    expected = model.recommend(users[:12], k=10)
    for row, user in enumerate(users[:12]):
        mine = expected[expected["user_id"].astype(str) == user]
        _same_ranking(default["item_ids"][row], default["scores"][row], mine)
    top = answers[name]["top"]
    expected = model.recommend(users[:12], k=3)
    for row, user in enumerate(users[:12]):
        mine = expected[expected["user_id"].astype(str) == user]
        _same_ranking(top["item_ids"][row], top["scores"][row], mine)
    custom = answers[name]["custom"]
    excluded = [str(i) for i in data.items.external_ids[:4]]
    expected = model.recommend(users[:12], k=6, exclude_seen=False, exclude=excluded)
    for row, user in enumerate(users[:12]):
        mine = expected[expected["user_id"].astype(str) == user]
        _same_ranking(custom["item_ids"][row], custom["scores"][row], mine)
        assert not set(custom["item_ids"][row]) & set(excluded)


def test_savedmodel_serves_unknown_users_from_the_fallback_vector(
    answers: dict[str, Any], models: dict[str, Recommender]
) -> None:
    embeddings = _contract(models["two-tower"]).embeddings
    assert embeddings is not None
    scores = embeddings.item_vectors @ embeddings.fallback
    best = np.sort(scores)[::-1][:10]
    np.testing.assert_allclose(answers["two-tower"]["default"]["scores"][-1], best, rtol=1e-5)


@pytest.mark.parametrize("name", RANKING)
def test_ranking_savedmodel_scores_like_rekko(
    name: str, answers: dict[str, Any], models: dict[str, Recommender], data: Dataset
) -> None:
    model = models[name]
    users = _users(data)[:12]
    items = [str(i) for i in data.items.external_ids[:12]]
    expected = [
        float(model.score(user, [item])[0]) for user, item in zip(users, items, strict=True)
    ]
    np.testing.assert_allclose(answers[name]["scores"], expected, rtol=1e-5, atol=1e-6)


def test_savedmodel_manifest_describes_the_export(
    saved: Path, models: dict[str, Recommender], data: Dataset
) -> None:
    manifest = read_manifest(saved / "two-tower")
    assert manifest["model"] == "two-tower"
    assert manifest["kind"] == "savedmodel-retrieval"
    assert manifest["data_fingerprint"] == data.fingerprint()
    assert manifest["rekko_version"]
    assert manifest["vocabulary_sizes"] == {"users": data.n_users, "items": data.n_items}
    assert set(manifest["signatures"]) == {"serving_default", "top_k", "recommend"}
    assert set(manifest["signatures"]["top_k"]["inputs"]) == {"user_ids", "k"}
    assert set(manifest["signatures"]["recommend"]["inputs"]) == {
        "user_ids",
        "k",
        "exclude",
        "exclude_seen",
    }
    assert (saved / "two-tower" / "items.txt").read_text().split() == [
        str(i) for i in data.items.external_ids
    ]
    ranking = read_manifest(saved / "ranking")
    assert ranking["kind"] == "savedmodel-ranking" and ranking["score"] == "probability"


def test_tflite_user_tower_matches_rekko(
    models: dict[str, Recommender], data: Dataset, tmp_path: Path
) -> None:
    model = models["two-tower"]
    folder = export_tflite(model, tmp_path / "tt")
    manifest = read_manifest(folder)
    entry = manifest["models"]["user_tower.tflite"]
    assert entry["max_abs_difference_vs_keras"] < 1e-4
    users = np.arange(10)
    inputs: dict[str, np.ndarray] = {
        name: np.asarray(model.user_codes_[name][users])  # type: ignore[attr-defined]
        for name in entry["inputs"]
        if name.startswith("user_") and name not in ("user_history", "user_id")
    }
    inputs["user_history"] = pad_rows(data.matrix, users)
    vectors = run_tflite(folder / "user_tower.tflite", inputs)["vector"]
    embeddings = _contract(model).embeddings
    assert embeddings is not None
    np.testing.assert_allclose(vectors, embeddings.user_vectors[users], atol=1e-4)
    item_vectors = np.load(folder / "item_vectors.npy")
    np.testing.assert_allclose(vectors @ item_vectors.T, model._score(users), rtol=1e-4, atol=1e-4)
    assert manifest["vocabularies"]["user_cat0"]["column"] == "country"


def test_tflite_of_neural_mf_has_user_table_and_ranking(
    models: dict[str, Recommender], tmp_path: Path
) -> None:
    model = models["neural-mf"]
    folder = export_tflite(model, tmp_path / "mf")
    ids = np.asarray([1, 2, 3, 0], dtype=np.int32)
    vectors = run_tflite(folder / "user_tower.tflite", {"user_id": ids})["vector"]
    embeddings = _contract(model).embeddings
    assert embeddings is not None
    np.testing.assert_allclose(vectors[:3], embeddings.user_vectors[:3], atol=1e-6)
    np.testing.assert_allclose(vectors[3], embeddings.fallback, atol=1e-6)
    assert (folder / "ranking.tflite").is_file()


@pytest.mark.parametrize("name", RANKING)
def test_tflite_ranking_matches_rekko(
    name: str, models: dict[str, Recommender], data: Dataset, tmp_path: Path
) -> None:
    model = models[name]
    folder = export_tflite(model, tmp_path / name)
    manifest = read_manifest(folder)
    entry = manifest["models"]["ranking.tflite"]
    users = np.arange(12)
    items = np.arange(12)
    scorer = _contract(model).pair_scorer
    assert scorer is not None
    inputs = {}  # what an app feeds: ids + 1 (0 when untrained) and the sides' encoded rows
    for side, index in ((scorer.users, users), (scorer.items, items)):
        inputs[side.id_input] = np.where(side.trained[index], index + 1, 0).astype(np.int32)
        inputs.update({name: codes[index] for name, codes in side.codes.items()})
    assert set(inputs) == set(entry["inputs"])
    raw = run_tflite(folder / "ranking.tflite", inputs)["score"]
    expected = np.asarray(
        [
            model.score(data.users.external_ids[u], [data.items.external_ids[i]])[0]
            for u, i in zip(users, items, strict=True)
        ]
    )
    probability = 1.0 / (1.0 + np.exp(-raw)) if name == "ranking" else raw
    np.testing.assert_allclose(probability, expected, rtol=1e-4, atol=1e-5)


def test_export_model_reads_a_model_folder(models: dict[str, Recommender], tmp_path: Path) -> None:
    models["neural-mf"].save(tmp_path / "model")
    folder = export_model(tmp_path / "model", "savedmodel", tmp_path / "export")
    assert (folder / "saved_model.pb").is_file()
    assert read_manifest(folder)["model"] == "neural-mf"
    again = export_model(tmp_path / "model", "tflite", tmp_path / "export")
    assert (again / "user_tower.tflite").is_file() and not (again / "saved_model.pb").exists()


def test_models_without_embeddings_are_refused(data: Dataset, tmp_path: Path) -> None:
    popularity = create_model("popularity").fit(data)
    with pytest.raises(ModelError, match="popularity"):
        export_savedmodel(popularity, tmp_path / "pop")
    with pytest.raises(ModelError, match="popularity"):
        export_tflite(popularity, tmp_path / "pop")


def test_export_refuses_to_overwrite_other_folders(
    models: dict[str, Recommender], tmp_path: Path
) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ModelError, match="not empty"):
        export_savedmodel(models["neural-mf"], tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_factor_models_export_through_the_base_contract(data: Dataset, tmp_path: Path) -> None:
    # ALS declares no export of its own: the base contract serves its factors
    model = create_model("als", factors=8, iterations=5).fit(data)
    folder = export_savedmodel(model, tmp_path / "als")
    answers = _plain_tf(
        {
            "als": {
                "folder": str(folder),
                "kind": "retrieval",
                "users": _users(data),
                "k": 4,
                "exclude": [],
            }
        }
    )["als"]["default"]
    assert answers["known"] == [True] * 12 + [False]
    expected = model.recommend(_users(data)[:12], k=10)
    for row, user in enumerate(_users(data)[:12]):
        mine = expected[expected["user_id"].astype(str) == user]
        _same_ranking(answers["item_ids"][row], answers["scores"][row], mine, atol=1e-4)
    assert read_manifest(folder)["score"] == "score"
