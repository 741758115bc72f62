"""The demo shop written as CSV files (``rekko datasets export demo``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from rekko.cli import app
from rekko.data.demo import DEMO_EVENT_RATINGS, demo_frames, demo_ratings, write_demo_files
from rekko.errors import DataError


def test_the_files_hold_the_demo_frames(tmp_path: Path) -> None:
    paths = write_demo_files(tmp_path / "new", n_users=50, n_items=40, seed=3)
    assert [path.name for path in paths] == ["events.csv", "items.csv", "users.csv", "ratings.csv"]
    events, items, users = demo_frames(n_users=50, n_items=40, seed=3)
    for frame, path in zip((events, items, users), paths[:3], strict=True):
        pd.testing.assert_frame_equal(pd.read_csv(path), frame)


def test_each_pair_is_rated_by_its_strongest_event() -> None:
    events = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b", "b"],
            "item_id": ["x", "x", "y", "x", "x"],
            "event": ["view", "addtocart", "view", "transaction", "view"],
            "timestamp": [10, 70, 20, 5, 3],
        }
    )
    ratings = demo_ratings(events)
    assert ratings.to_dict("list") == {
        "user_id": ["a", "a", "b"],
        "item_id": ["x", "y", "x"],
        "rating": [DEMO_EVENT_RATINGS["addtocart"], DEMO_EVENT_RATINGS["view"], 5],
        "timestamp": [70, 20, 5],
    }
    with pytest.raises(ValueError, match="unknown types \\['like'\\]"):
        demo_ratings(events.assign(event=["like", "view", "view", "view", "view"]))


def test_the_demo_ratings_cover_every_pair_once() -> None:
    events, _, _ = demo_frames(n_users=80, n_items=60, seed=5)
    ratings = demo_ratings(events)
    pairs = events[["user_id", "item_id"]].drop_duplicates()
    assert len(ratings) == len(pairs) and not ratings.duplicated(["user_id", "item_id"]).any()
    assert set(ratings["rating"]) <= {3, 4, 5} and ratings["rating"].nunique() == 3


def test_the_command_writes_the_files_and_refuses_other_sets(tmp_path: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["datasets", "export", "demo", "-o", str(tmp_path)])
    assert done.exit_code == 0, done.output
    written = sorted(path.name for path in tmp_path.iterdir())
    assert written == ["events.csv", "items.csv", "ratings.csv", "users.csv"]
    assert len(pd.read_csv(tmp_path / "users.csv")) == 600
    other = runner.invoke(app, ["datasets", "export", "ml-100k", "-o", str(tmp_path / "x")])
    assert isinstance(other.exception, DataError)
    assert "only the demo shop" in str(other.exception)
    assert not (tmp_path / "x").exists()
