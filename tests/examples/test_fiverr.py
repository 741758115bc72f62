"""examples/fiverr: stated needs and free text (content + constraints), known clients
(item-knn, two-tower), and the same answers over HTTP, on the real Fiverr gigs."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).parents[2] / "examples" / "fiverr" / "illustrators.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fiverr_illustrators", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def summary(datasets_dir: Path) -> dict[str, Any]:
    pytest.importorskip("tensorflow")
    pytest.importorskip("fastapi")
    return _load().main(["--data", str(datasets_dir / "fiverr"), "-k", "5", "--epochs", "3"])


def test_stated_needs_respect_the_constraints(summary: dict[str, Any]) -> None:
    rows = summary["stated"]
    assert len(rows) == 5
    for row in rows:
        assert row["gig_design_type"] == "logos"
        assert row["gig_price_from"] <= 30
    # the soft preference (minimalist) wins where it can
    assert all(row["gig_design_style"] == "minimalist" for row in rows)


def test_free_text_finds_anime_illustrators(summary: dict[str, Any]) -> None:
    rows = summary["text"]
    assert len(rows) == 5
    assert sum(row["gig_design_style"] == "anime" for row in rows) >= 4
    assert any("anime" in line for line in summary["text_explain"])


def test_known_client_gets_unseen_gigs_from_both_models(summary: dict[str, Any]) -> None:
    seen = set(summary["client_seen"])
    assert seen
    for name in ("item-knn", "two-tower"):
        ids = summary[name]
        assert len(ids) == 5 and len(set(ids)) == 5
        assert seen.isdisjoint(ids)


def test_service_answers_like_the_library(summary: dict[str, Any]) -> None:
    http = summary["http"]
    stated = http["stated"]["items"]
    assert len(stated) == 5
    for item in stated:
        assert item["fields"]["gig_design_type"] == "logos"
        assert item["fields"]["gig_price_from"] <= 30
    assert [item["item_id"] for item in stated] == [row["item_id"] for row in summary["stated"]]
    text = [item["item_id"] for item in http["text"]["items"]]
    assert text == [row["item_id"] for row in summary["text"]]
    known = http["known"]
    assert known["fallback"] is None
    assert known["model_version"] == http["versions"]["item-knn"]
    assert [item["item_id"] for item in known["items"]] == summary["item-knn"]
    towers = http["known two-tower"]
    assert towers["fallback"] is None
    assert towers["model_version"] == http["versions"]["two-tower"]
    # Trained by the service from what it stored (its own id order), so not the same list.
    served = [item["item_id"] for item in towers["items"]]
    assert len(set(served)) == 5 and set(summary["client_seen"]).isdisjoint(served)
