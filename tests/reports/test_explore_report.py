"""The explore report: self-contained, every section and chart present, the real numbers shown.

Expected numbers are computed here from the raw demo events, not with the report's own code.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rekko.data.dataset import Dataset
from rekko.data.demo import DEMO_EVENT_WEIGHTS, demo_frames
from rekko.reports import explore_report
from rekko.reports.stats import (
    cold_start_table,
    feature_coverage,
    gini,
    time_table,
    top_share_table,
    user_activity_features,
)

SECTIONS = (
    "overview",
    "events",
    "popularity",
    "users",
    "time",
    "sparsity",
    "ratings",
    "features",
    "correlations",
)
#: Charts of a data set with events, timestamps, varying values and features.
DEMO_CHARTS = 8


@pytest.fixture(scope="module")
def demo_html(demo: Dataset, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = explore_report(demo, tmp_path_factory.mktemp("explore") / "demo.html")
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def ratings() -> Dataset:
    """Explicit ratings without timestamps, events or features; one cold item."""
    frame = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b", "b", "c", "c", "c", "c", "d"],
            "item_id": ["x", "y", "z", "x", "y", "x", "z", "w", "v", "x"],
            "rating": [5, 4, 4, 3, 5, 1, 4, 2, 5, 4],
        }
    )
    items = pd.DataFrame({"item_id": ["x", "y", "cold"], "genre": ["a", None, "b"]})
    return Dataset.from_frame(frame, item_features=items, name="tiny <ratings>")


def assert_self_contained(html: str) -> None:
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html.lower()
    assert "<link" not in html.lower()
    for attribute in re.findall(r'\b(?:src|href)="([^"]*)"', html):
        assert attribute.startswith(("#", "data:")), attribute


def test_demo_report_is_self_contained_and_accessible(demo_html: str) -> None:
    assert_self_contained(demo_html)
    assert demo_html.startswith("<!DOCTYPE html>")
    assert '<html lang="en">' in demo_html
    assert 'name="viewport"' in demo_html
    ids = re.findall(r'\bid="([^"]+)"', demo_html)
    assert len(ids) == len(set(ids)), "element ids must be unique across all charts"


def test_demo_report_has_every_section_and_chart(demo_html: str) -> None:
    for section in SECTIONS:
        assert f'<section id="{section}"' in demo_html, section
        assert f'<a href="#{section}">' in demo_html, f"{section} missing from the contents"
    charts = re.findall(r"<svg\b[^>]*>", demo_html)
    assert len(charts) == DEMO_CHARTS
    for chart in charts:
        assert 'role="img"' in chart and "aria-labelledby" in chart
    # Every chart has a text alternative with real content.
    descriptions = re.findall(r'<desc id="[^"]+">([^<]+)</desc>', demo_html)
    assert len(descriptions) == DEMO_CHARTS
    assert all(len(text) > 40 for text in descriptions)
    assert "has no timestamps" not in demo_html


def test_demo_report_shows_the_real_counts(demo_html: str) -> None:
    events, items, _ = demo_frames()
    pairs = events.groupby(["user_id", "item_id"])
    n_pairs = pairs.ngroups
    assert f"<dd>{n_pairs:,}</dd>" in demo_html  # headline card
    assert f"<dd>{len(events):,}</dd>" in demo_html  # raw events card
    assert f"<dd>{events['user_id'].nunique():,}</dd>" in demo_html
    assert f"<dd>{len(items):,}</dd>" in demo_html

    # Each pair counts under its strongest event type.
    weight = events["event"].map(dict(DEMO_EVENT_WEIGHTS.weights))
    strongest = (
        events.assign(weight=weight)
        .sort_values("weight")
        .groupby(["user_id", "item_id"])["event"]
        .last()
    )
    for event, count in strongest.value_counts().items():
        share = count / n_pairs
        assert (
            f'<th scope="row">{event}</th><td class="num">{count:,}</td>'
            f'<td class="num">{share:.1%}</td>'
        ) in demo_html, event


def test_demo_report_shows_popularity_concentration(demo_html: str) -> None:
    events, items, _ = demo_frames()
    per_item = events.groupby("item_id")["user_id"].nunique().sort_values(ascending=False)
    n_top = int(np.ceil(0.10 * len(items)))
    held = int(per_item.iloc[:n_top].sum())
    share = held / per_item.sum()
    assert (
        f'<th scope="row">Top 10%</th><td class="num">{n_top}</td>'
        f'<td class="num">{held:,}</td><td class="num">{share:.1%}</td>'
    ) in demo_html
    most_popular = per_item.index[0]
    assert f"<td>{most_popular}</td>" in demo_html


def test_demo_report_shows_events_per_month(demo_html: str) -> None:
    events, _, _ = demo_frames()
    latest = events.groupby(["user_id", "item_id"])["timestamp"].max()
    months = pd.to_datetime(latest.to_numpy(), unit="s").strftime("%Y-%m")
    for month, count in pd.Series(months).value_counts().items():
        assert re.search(
            rf'<th scope="row">{month}</th>(<td class="num">[\d,]+</td>){{3}}'
            rf'<td class="num">{count:,}</td>',
            demo_html,
        ), month


def test_report_of_explicit_data_without_times_events_or_features(
    ratings: Dataset, tmp_path: Path
) -> None:
    path = explore_report(ratings, tmp_path / "out" / "report.html", image_format="png")
    html = path.read_text(encoding="utf-8")
    assert_self_contained(html)
    for section in SECTIONS:
        assert f'<section id="{section}"' in html
    assert "no event types" in html
    assert "no timestamps" in html
    assert "<title>Data set report: tiny &lt;ratings&gt;</title>" in html
    assert "<ratings>" not in html
    # events and time have no chart; the correlation of user measures needs 2 varying ones.
    n_charts = len(re.findall(r"<svg\b", html))
    assert n_charts == 6
    for rating, count in {1: 1, 2: 1, 3: 1, 4: 4, 5: 3}.items():
        assert f'<th scope="row">{rating}</th><td class="num">{count}</td>' in html
    # The cold item counts as an item with 0 interactions.
    assert '<th scope="row">Items</th><td>0 interactions</td><td class="num">1</td>' in html
    # The page stays self-contained; the charts are also written as PNG files on request.
    files = sorted((tmp_path / "out" / "report_charts").iterdir())
    assert len(files) == n_charts
    assert all(file.suffix == ".png" and file.read_bytes()[:4] == b"\x89PNG" for file in files)


def test_statistics_on_known_counts() -> None:
    assert gini(np.array([3, 3, 3, 3])) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 10])) == pytest.approx(0.75)
    shares = top_share_table(np.arange(100, dtype=np.int64))
    assert shares["items"].tolist() == [1, 10, 20]
    assert shares["interactions"].tolist() == [99, sum(range(90, 100)), sum(range(80, 100))]
    assert shares["share"].iloc[0] == pytest.approx(99 / 4950)


def test_statistics_of_a_small_data_set(ratings: Dataset) -> None:
    cold = cold_start_table(ratings).set_index(["side", "group"])["count"]
    assert cold[("Users", "1 interaction")] == 1  # user d
    assert cold[("Users", "fewer than 5")] == 4
    assert cold[("Items", "0 interactions")] == 1  # the item only in the feature table
    coverage = feature_coverage(ratings).set_index("feature")
    assert coverage.loc["genre", "present"] == 2  # x and cold; y is None; the rest unknown
    assert coverage.loc["genre", "share"] == pytest.approx(2 / ratings.n_items)
    activity = user_activity_features(ratings)
    assert activity["distinct items"].sort_index().tolist() == [3, 2, 4, 1]
    assert "raw events" not in activity.columns  # one event per pair: same as distinct items


def test_time_table_counts_every_interaction(demo: Dataset) -> None:
    for frequency in ("D", "W", "M"):
        table = time_table(demo, frequency)
        assert table["interactions"].sum() == len(demo)
        assert (
            table[["view", "addtocart", "transaction"]].sum(axis=1) == table["interactions"]
        ).all()


def test_importing_reports_does_not_import_matplotlib() -> None:
    code = "import sys, rekko, rekko.reports; print('matplotlib' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
