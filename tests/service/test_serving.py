"""The serving layer without HTTP: the fast path, fallbacks, fold-in of fresh events."""

from __future__ import annotations

import numpy as np
import pytest

from rekko.constraints import parse_constraints
from rekko.data.dataset import Dataset, EventWeights
from rekko.data.demo import load_demo
from rekko.models.base import Recommender
from rekko.models.registry import available_models, create_model
from rekko.service.serving import Catalogue, ServedModel
from rekko.store.registry import VersionInfo
from rekko.store.repository import StoredEvent

WEIGHTS = EventWeights({"view": 1.0}, default=1.0)


@pytest.fixture(scope="module")
def demo() -> Dataset:
    return load_demo(n_users=80, n_items=60, seed=5)


def _served(model: Recommender) -> ServedModel:
    info = VersionInfo(version="v1", algorithm=model.name, created_at="now")
    return ServedModel(info, model, WEIGHTS)


@pytest.mark.parametrize("name", ["popularity", "content"])
def test_served_lists_equal_the_models_own(demo: Dataset, name: str) -> None:
    if name not in available_models():
        pytest.skip(f"{name} is not available")
    model = create_model(name).fit(demo)
    served = _served(model)
    users = [str(u) for u in demo.users.external_ids[:15]]
    excluded = [str(i) for i in demo.items.external_ids[:7]]
    for user in users:
        for exclude in ([], excluded):
            got = served.recommend_user(user, 6, None, exclude)
            expected = model.recommend([user], 6, exclude=exclude or None)
            assert got.item_ids == [str(i) for i in expected["item_id"]]
            assert np.allclose(got.scores, expected["score"].to_numpy(), rtol=1e-6)
            assert got.fallback is None
    cheap = parse_constraints({"price": {"max": 20}})
    filtered = served.recommend_user(users[0], 5, cheap, [])
    expected = model.recommend([users[0]], 5, filters=cheap)
    assert filtered.item_ids == [str(i) for i in expected["item_id"]]


def test_unknown_users_and_fresh_events(demo: Dataset) -> None:
    served = _served(create_model("popularity").fit(demo))
    popular = served.recommend_user("stranger", 5, None, [])
    assert popular.fallback == "popularity" and len(popular.item_ids) == 5
    assert popular.scores == sorted(popular.scores, reverse=True)
    known = str(demo.users.external_ids[0])
    first = served.recommend_user(known, 3, None, []).item_ids[0]
    applied = served.apply(
        [
            StoredEvent(1, known, first, "view", 1.0),
            StoredEvent(2, "stranger", "i0001", "view", 1.0),
        ]
    )
    assert applied == 1  # popularity cannot fold in the stranger...
    assert first not in served.recommend_user(known, 3, None, []).item_ids
    history = served.recommend_user("stranger", 5, None, [])
    assert history.fallback == "history"  # ...but remembers what they did
    assert "i0001" not in history.item_ids
    zero = served.apply([StoredEvent(3, known, "i0002", "impression", 0.0)])
    assert zero == 0


def test_fold_in_models_learn_new_users(demo: Dataset) -> None:
    if "content" not in available_models():
        pytest.skip("content is not available")
    served = _served(create_model("content").fit(demo))
    served.apply([StoredEvent(1, "newcomer", "i0003", "view", 1.0)])
    ranked = served.recommend_user("newcomer", 5, None, [])
    assert ranked.fallback is None and "i0003" not in ranked.item_ids
    similar = served.similar("i0003", 4, None, [])
    assert similar.fallback is None and "i0003" not in similar.item_ids
    query = served.recommend_anonymous(
        3, query="vintage", preferences=None, basket=[], constraint=None, exclude=[]
    )
    assert query.fallback is None and len(query.item_ids) == 3


def test_catalogue_tracks_hidden_items() -> None:
    from rekko.store.repository import ItemRecord

    catalogue = Catalogue()
    catalogue._apply([ItemRecord("a", {"t": 1}, "active", 1), ItemRecord("b", {}, "hidden", 2)])
    assert catalogue.blocked == {"b"}
    assert catalogue.fields("a", ["t", "x"]) == {"t": 1, "x": None}
    catalogue._apply([ItemRecord("b", {}, "active", 3), ItemRecord("a", {}, "deleted", 4)])
    assert catalogue.blocked == {"a"} and "a" not in catalogue.features
