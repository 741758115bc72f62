"""evaluate_with_details agrees with evaluate; the evaluation report shows its numbers."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rekko.data.dataset import Dataset
from rekko.data.splits import RandomSplit
from rekko.evaluation import Protocol, evaluate
from rekko.models.baselines import Popularity
from rekko.models.neighbors import ItemKNN
from rekko.reports import EvaluationDetails, evaluate_with_details, evaluation_report
from rekko.reports.html import format_metric

KS = (5, 10, 20)
SPLIT = RandomSplit(0.2, seed=1)
SECTIONS = ("results", "accuracy", "curves", "tradeoffs", "popularity", "timing")


@pytest.fixture(scope="module")
def details(small_demo: Dataset) -> EvaluationDetails:
    models = {"popularity": Popularity(), "item-knn": ItemKNN()}
    return evaluate_with_details(models, small_demo, SPLIT, protocol=Protocol(ks=KS))


@pytest.fixture(scope="module")
def report_html(details: EvaluationDetails, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = evaluation_report(details, tmp_path_factory.mktemp("evaluation") / "report.html")
    return path.read_text(encoding="utf-8")


def test_details_agree_with_evaluate(small_demo: Dataset, details: EvaluationDetails) -> None:
    plain = evaluate(
        {"popularity": Popularity(), "item-knn": ItemKNN()},
        small_demo,
        SPLIT,
        protocol=Protocol(ks=KS),
    )
    assert details.metrics.columns.tolist() == plain.columns.tolist()
    shared = [c for c in plain.columns if c not in ("model", "fit_s", "recommend_s")]
    assert details.table["model"].tolist() == plain["model"].tolist()
    np.testing.assert_allclose(
        details.table[shared].to_numpy(dtype=float), plain[shared].to_numpy(dtype=float)
    )


def test_per_user_values_give_the_means_and_standard_errors(details: EvaluationDetails) -> None:
    for row, model in enumerate(details.table["model"]):
        for k in KS:
            values = details.per_user[model][f"ndcg@{k}"]
            assert len(values) == len(details.users) == details.table.loc[row, "users"]
            assert values.mean() == pytest.approx(details.table.loc[row, f"ndcg@{k}"])
            expected = values.std(ddof=1) / math.sqrt(len(values))
            assert details.table.loc[row, f"ndcg@{k}_se"] == pytest.approx(expected)


def test_curves_cover_every_k_and_match_the_table(details: EvaluationDetails) -> None:
    curves = details.curves
    for model in details.table["model"]:
        recall = curves[(curves["model"] == model) & (curves["metric"] == "recall")]
        assert recall["k"].tolist() == list(range(1, max(KS) + 1))
        assert (np.diff(recall["value"].to_numpy()) >= -1e-12).all()  # recall never drops
        coverage = curves[(curves["model"] == model) & (curves["metric"] == "coverage")]
        assert len(coverage) == max(KS)
    table = details.table.set_index("model")
    for model, k in (("popularity", 5), ("item-knn", 10)):
        at_k = curves[
            (curves["model"] == model) & (curves["metric"] == "ndcg") & (curves["k"] == k)
        ]
        assert at_k["value"].item() == pytest.approx(table.loc[model, f"ndcg@{k}"])
        assert at_k["se"].item() == pytest.approx(table.loc[model, f"ndcg@{k}_se"])


def test_reference_popularity(small_demo: Dataset, details: EvaluationDetails) -> None:
    train, _ = SPLIT.split(small_demo)
    popularity = np.bincount(train.interactions["item"], minlength=train.n_items)
    frame = train.interactions[train.interactions["user"].isin(details.users)]
    per_user = pd.Series(popularity[frame["item"]]).groupby(frame["user"].to_numpy()).mean()
    assert details.table["data_popularity"].iloc[0] == pytest.approx(per_user.mean())
    assert details.table["catalogue_popularity"].iloc[0] == pytest.approx(popularity.mean())


def test_report_is_self_contained_with_every_section(report_html: str) -> None:
    assert "http://" not in report_html and "https://" not in report_html
    assert "<script" not in report_html.lower()
    for attribute in re.findall(r'\b(?:src|href)="([^"]*)"', report_html):
        assert attribute.startswith("#"), attribute
    for section in SECTIONS:
        assert f'<section id="{section}"' in report_html, section
        assert f'<a href="#{section}">' in report_html
    assert len(re.findall(r'<svg class="chart"[^>]*role="img"', report_html)) == len(SECTIONS) - 1
    ids = re.findall(r'\bid="([^"]+)"', report_html)
    assert len(ids) == len(set(ids))


def test_report_shows_each_models_numbers(details: EvaluationDetails, report_html: str) -> None:
    table = details.table
    models = table["model"].tolist()
    ndcg = table["ndcg@10"].to_numpy(dtype=float)
    errors = table["ndcg@10_se"].to_numpy(dtype=float)
    for model, value, error in zip(models, ndcg, errors, strict=True):
        expected = f'{format_metric(value)}<span class="se"> ± {format_metric(1.96 * error)}</span>'
        assert expected in report_html
        assert f'<th scope="col" class="num">{model}</th>' in report_html
    assert f'<span class="best">{format_metric(ndcg.max())}</span>' in report_html


def test_report_from_a_plain_table(small_demo: Dataset, tmp_path: Path) -> None:
    """A table from evaluate works too: no error bars, no curves, names escaped."""
    table = pd.DataFrame(
        {
            "model": ["<b>bold</b>", "cost$ 5$"],
            "ndcg@10": [0.123456, 0.2],
            "recall@10": [0.3, 0.4],
            "coverage@10": [0.5, 0.1],
            "novelty@10": [4.0, 3.0],
            "popularity@10": [10.0, 30.0],
            "fit_s": [0.5, 120.0],
            "recommend_s": [0.01, 2.0],
            "users": [100, 100],
            "cold_users": [0, 0],
        }
    )
    html = evaluation_report(table, tmp_path / "plain.html", title="Plain").read_text("utf-8")
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "0.1235" in html and "0.2000" in html
    assert "No curves given" in html
    assert "No standard errors" in html
    assert len(re.findall(r"<svg\b", html)) == 4  # accuracy, trade-offs, popularity, timing


def test_report_rejects_a_table_without_metrics(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ranking metric"):
        evaluation_report(pd.DataFrame({"model": ["x"], "fit_s": [1.0]}), tmp_path / "x.html")
