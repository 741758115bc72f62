"""examples/ecommerce: generated Retailrocket-format files, `rekko explore`, event weighting
and als vs neural-mf vs ease/hybrid with `rekko evaluate`."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).parents[2] / "examples" / "ecommerce" / "shop.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ecommerce_shop", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pytest.importorskip("tensorflow")
    out = tmp_path_factory.mktemp("shop")
    return _load().main(["--out", str(out), "--visitors", "3000"])


def test_files_are_in_the_retailrocket_format(summary: dict[str, Any]) -> None:
    folder = Path(summary["data_dir"])
    with (folder / "events.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["timestamp", "visitorid", "event", "itemid", "transactionid"]
    assert int(rows[0]["timestamp"]) > 10**12  # milliseconds
    kinds = [row["event"] for row in rows]
    assert set(kinds) == {"view", "addtocart", "transaction"}
    assert kinds.count("view") / len(kinds) > 0.9
    assert all(row["transactionid"] for row in rows if row["event"] == "transaction")
    assert not any(row["transactionid"] for row in rows if row["event"] != "transaction")
    for name in ("item_properties_part1.csv", "item_properties_part2.csv", "category_tree.csv"):
        assert (folder / name).stat().st_size > 0


def test_reports_are_written(summary: dict[str, Any]) -> None:
    for path in (summary["explore"], Path(summary["data_dir"]).parent / "evaluation.html"):
        text = Path(path).read_text()
        assert text.startswith("<!") and "<svg" in text


def test_ranking_quality_bands(summary: dict[str, Any]) -> None:
    ndcg = {model: row["ndcg@10"] for model, row in summary["models"].items()}
    assert set(ndcg) == {"popularity", "als", "neural-mf", "ease", "hybrid"}
    assert 0.05 < ndcg["popularity"] < 0.2
    for model in ("als", "neural-mf", "ease", "hybrid"):
        assert ndcg[model] > 2 * ndcg["popularity"], model
    assert ndcg["ease"] >= ndcg["als"] > ndcg["neural-mf"]
    assert ndcg["ease"] > 0.3


def test_event_weighting_changes_the_model(summary: dict[str, Any]) -> None:
    uniform, heavy = summary["uniform"]["ndcg@10"], summary["purchase-heavy"]["ndcg@10"]
    assert uniform != heavy
    # the generated buyers buy what they like: weighting purchases up helps
    assert heavy >= uniform - 0.01
