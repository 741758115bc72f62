"""The sequential model: the order of events, fold-in of the latest events, quality on
MovieLens-100K (slow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rekko.data.dataset import Dataset
from rekko.data.splits import LeaveLastOut
from rekko.errors import ModelError
from rekko.evaluation import evaluate
from rekko.models import Query, create_model, load_model

FAST = {"max_epochs": 30, "validation_fraction": 0.0, "learning_rate": 0.01, "dropout": 0.0}
#: (low, high) NDCG@10 of ``sequential`` with ``max_epochs=6`` on ML-100K, each user's last
#: rating as test (LeaveLastOut). Measured 0.050 (recall@10 0.097); popularity: about 0.025.
SEQUENTIAL_NDCG = (0.035, 0.07)


@pytest.fixture(scope="module")
def chains() -> Dataset:
    """Users walk one of two item cycles (a0 -> a1 -> ... and b0 -> b1 -> ...), one step a
    day: the next item is only predictable from the order of events."""
    rows = []
    for user in range(40):
        cycle = "ab"[user % 2]
        start = user % 6
        for step in range(8):
            rows.append((f"u{user}", f"{cycle}{(start + step) % 6}", 86_400 * (step + user)))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return Dataset.from_frame(frame, name="chains")


def test_it_learns_what_comes_next(chains: Dataset) -> None:
    model = create_model("sequential", **FAST).fit(chains)
    # u0 ends at a1 (0 + 7 = 7 -> 1): a2 is next; seen items are excluded by default, so
    # score every item instead.
    users = list(chains.users.external_ids[:12])
    best, _ = model.rank(chains.users.to_index(users), 1, exclude_seen=False)
    frame = chains.to_frame().sort_values("timestamp")
    for user, top in zip(users, best[:, 0], strict=True):
        last = frame.loc[frame["user_id"] == user, "item_id"].iloc[-1]
        expected = f"{last[0]}{(int(last[1]) + 1) % 6}"
        assert chains.items.external_ids[top] == expected, user


def test_fold_in_reads_the_latest_events_in_order(chains: Dataset, tmp_path: Path) -> None:
    model = create_model("sequential", **FAST).fit(chains)
    model.add_interactions(["newcomer"] * 3, ["b2", "b3", "b4"])
    scores = model.score("newcomer", ["b5", "a0"])
    assert scores[0] > scores[1]
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    np.testing.assert_allclose(loaded.score("newcomer", ["b5", "a0"]), scores, rtol=1e-5)
    # the same items in another order point elsewhere
    model.add_interactions(["other"] * 3, ["b4", "b3", "b2"])
    assert not np.allclose(model.score("other", ["b5", "a0"]), scores)
    query = model.recommend_query(Query(basket=["a3", "a4"]), k=1, strict=True)
    assert query["item_id"].tolist() == ["a5"]


def test_bad_settings_are_clear_errors() -> None:
    with pytest.raises(ModelError, match="n_heads"):
        create_model("sequential", embedding_dim=10, n_heads=3)
    with pytest.raises(ModelError, match="max_length"):
        create_model("sequential", max_length=1)


@pytest.mark.slow
def test_sequential_ndcg_on_movielens_last_ratings(ml100k: Dataset) -> None:
    model = create_model("sequential", max_epochs=6, deterministic=True)
    table = evaluate({"sequential": model}, ml100k, LeaveLastOut())
    ndcg = float(table["ndcg@10"].to_numpy()[0])
    low, high = SEQUENTIAL_NDCG
    assert low <= ndcg <= high, ndcg


def test_fold_in_keeps_the_latest_events_of_a_long_history(chains: Dataset) -> None:
    model = create_model("sequential", max_length=4, max_epochs=1, validation_fraction=0.0)
    model.fit(chains)
    user = "u1"  # b-cycle from b1: ... b0, b1, b2 are its last three events
    before = model.sequences_[chains.users.index_of(user)].copy()
    model.add_interactions([user], ["a3"])
    after = model.sequences_[chains.users.index_of(user)]
    assert after.tolist() == [*before[1:].tolist(), chains.items.index_of("a3") + 1]
