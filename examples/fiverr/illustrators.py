"""Fiverr illustrators: content + constraints for stated needs and free text, collaborative and
two-tower recommendations for known clients, and the same answers over HTTP.

    python examples/fiverr/illustrators.py --data ../shared/datasets/fiverr

Prints a JSON summary as its last line (read by ``tests/examples/test_fiverr.py``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rekko.constraints import parse_constraints
from rekko.data.loaders import load_fiverr
from rekko.models import create_model

STATED = {"gig_design_type": "logos", "gig_design_style": "minimalist"}
BUDGET = {"gig_design_type": "logos", "gig_price_from": {"max": 30}}
FREE_TEXT = "cute anime character illustration"


def _features(frame: pd.DataFrame, ids: Sequence[str], columns: Sequence[str]) -> list[dict]:
    table = frame.set_index("item_id")
    return [{"item_id": i, **{c: table.at[i, c] for c in columns}} for i in ids]


def _show(title: str, rows: list[dict]) -> None:
    print(title)
    for rank, row in enumerate(rows, 1):
        rest = ", ".join(f"{k}={v}" for k, v in row.items() if k != "item_id")
        print(f"  {rank}. {row['item_id']} ({rest})")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value


def wait_for(http: Any, job_id: str, timeout: float = 120) -> dict[str, Any]:
    """Poll ``GET /training/jobs/{id}`` until the job has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = http.get(f"/training/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.2)
    raise RuntimeError(f"training job {job_id} did not finish in {timeout:.0f} s")


def serve(
    data: Any, items: pd.DataFrame, client_id: str, k: int, two_tower: dict[str, Any]
) -> dict[str, Any]:
    """Load the gigs and reviews into a fresh service (SQLite), train content, item-knn and
    two-tower, and ask it for a stated need with a budget, free text, and a known client."""
    from fastapi.testclient import TestClient

    from rekko.service import create_app
    from rekko.service.settings import ServeSettings

    answers: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        settings = ServeSettings(
            database_url=f"sqlite:///{Path(folder) / 'rekko.db'}",
            model_dir=Path(folder) / "models",
            training_executor="thread",
            bootstrap_demo=False,
            sync_interval_s=0.2,
        )
        with TestClient(create_app(settings)) as http:
            rows = [
                {"item_id": row["item_id"], "features": {c: _clean(row[c]) for c in row.index}}
                for _, row in items.iterrows()
            ]
            for start in range(0, len(rows), 1000):
                put = http.put("/items", json={"items": rows[start : start + 1000]})
                put.raise_for_status()
            frame = data.to_frame()
            events = [
                {"user_id": str(u), "item_id": str(i), "type": "review", "event_id": f"{u}|{i}"}
                for u, i in zip(frame["user_id"], frame["item_id"], strict=True)
            ]
            http.post("/events", json={"events": events}).raise_for_status()
            versions = {}
            for algorithm, params in (("content", {}), ("item-knn", {}), ("two-tower", two_tower)):
                job = http.post(
                    "/training/jobs", json={"algorithm": algorithm, "params": params}
                ).json()
                done = wait_for(http, job["job_id"])
                if done["status"] != "succeeded":
                    raise RuntimeError(f"training {algorithm} failed: {done}")
                versions[algorithm] = done["version"]
                http.post(f"/models/{done['version']}/activate").raise_for_status()
            content = versions["content"]
            http.post(f"/models/{content}/activate").raise_for_status()
            stated = http.post(
                "/recommendations/anonymous",
                json={
                    "preferences": {"gig_design_style": "minimalist"},
                    "filters": BUDGET,
                    "k": k,
                    "fields": ["gig_design_type", "gig_design_style", "gig_price_from"],
                },
            ).json()
            text = http.post(
                "/recommendations/anonymous",
                json={"query": FREE_TEXT, "k": k, "fields": ["gig_design_style"]},
            ).json()
            known, towers = (
                http.get(
                    f"/users/{client_id}/recommendations",
                    params={"k": k, "version": versions[algorithm]},
                ).json()
                for algorithm in ("item-knn", "two-tower")
            )
            answers = {
                "versions": versions,
                "stated": stated,
                "text": text,
                "known": known,
                "known two-tower": towers,
            }
    return answers


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/datasets/fiverr", help="fiverr folder")
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5, help="two-tower epochs")
    parser.add_argument("--no-service", action="store_true", help="skip the HTTP part")
    args = parser.parse_args(argv)
    k = args.k

    data = load_fiverr(args.data)
    print(data)
    items = data.item_features.frame.reset_index(drop=True)
    items.insert(0, "item_id", data.items.to_external(np.arange(len(items))).astype(str))
    summary: dict[str, Any] = {}

    # 1. A new client states what they want: content ranking, constraints first.
    content = create_model("content").fit(data)
    stated = content.recommend_query(STATED, k=k, filters=parse_constraints(BUDGET))
    cols = ["gig_design_type", "gig_design_style", "gig_price_from", "gig_rating"]
    stated_rows = _features(items, list(stated["item_id"]), cols)
    _show(f"stated {STATED} within {BUDGET}:", stated_rows)
    text = content.recommend_query(FREE_TEXT, k=k)
    text_rows = _features(items, list(text["item_id"]), ["gig_design_style", "gig_price_from"])
    _show(f"free text {FREE_TEXT!r}:", text_rows)
    summary["stated"] = stated_rows
    summary["text"] = text_rows
    summary["text_explain"] = content.explain(text_rows[0]["item_id"], query=FREE_TEXT)
    print("  why #1:", "; ".join(summary["text_explain"]))

    # 2. Known clients: collaborative (item-knn) and two-tower, the same client.
    frame = data.to_frame()
    counts = frame["user_id"].value_counts()
    client = str(counts.index[0])
    seen = set(frame.loc[frame["user_id"] == client, "item_id"].astype(str))
    print(f"client {client!r} reviewed {len(seen)} gigs")
    summary["client"] = client
    summary["client_seen"] = sorted(seen)
    two_tower = {"max_epochs": args.epochs, "embedding_dim": 32, "seed": 7}
    for name, params in (("item-knn", {}), ("two-tower", two_tower)):
        started = time.perf_counter()
        model = create_model(name, **params).fit(data)
        recs = model.recommend([client], k=k)
        ids = [str(i) for i in recs["item_id"]]
        took = time.perf_counter() - started
        _show(f"{name} for {client!r} ({took:.1f} s):", _features(items, ids, cols[:2]))
        summary[name] = ids

    # 3. The service: the same questions over HTTP.
    if not args.no_service:
        started = time.perf_counter()
        answers = serve(data, items, client, k, two_tower)
        print(f"service answered in {time.perf_counter() - started:.1f} s")
        for key in ("stated", "text", "known", "known two-tower"):
            body = answers[key]
            print(f"  HTTP {key}: fallback={body.get('fallback')}", end=" ")
            print([item["item_id"] for item in body.get("items", [])])
        summary["http"] = answers
    print(json.dumps(summary, default=str))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
