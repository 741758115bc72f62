"""How cost grows with data: load, fit and peak memory per method, and top-K latency per index.

For each log size (synthetic, see ``synthetic.py``), each method runs in its own subprocess so
that its peak memory (resident set of the process and its children, e.g. Spark's JVM, sampled
every 50 ms) is its own:

* ``load``: Parquet -> ``read_interactions`` -> ``Dataset.from_frame``;
* ``ease``, ``als``, ``item-knn``: load, then fit with default parameters (EASE only where the
  catalogue fits its dense inverse);
* ``spark-als``: ``train_spark_als`` on Spark ``local[2]`` from the same Parquet file, model
  folder written (reading, id mapping in Spark, ALS, collecting factors).

Then the latency of one user's top-10 through ``recommend`` with brute force and with the
HNSW index (``index_mode="ann"``), over random 64-dimensional factors of 10k, 100k and 1M
items, with the index's build time and recall@10 against brute force.

Usage (each run is bounded by ``--timeout`` seconds; results go to ``results/scale.md``)::

    .venv/bin/python benchmarks/scale.py --sizes 1m,10m --latency 10k,100k,1m
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import header, markdown_table, write_result
from synthetic import Shape, generate

METHODS = ("load", "ease", "als", "item-knn", "spark-als")
SIZES = {"1m": 1_000_000, "3m": 3_000_000, "10m": 10_000_000, "30m": 30_000_000}
CATALOGUES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}
PAGE = os.sysconf("SC_PAGE_SIZE")


# -- memory of a process tree ------------------------------------------------------------------
def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants."""
    tree, total, stack = _children(), 0, [pid]
    while stack:
        current = stack.pop()
        with contextlib.suppress(OSError):
            total += int((Path(f"/proc/{current}/statm")).read_text().split()[1]) * PAGE
        stack.extend(tree.get(current, []))
    return total


def run_child(args: list[str], timeout: float) -> dict[str, Any]:
    """Run ``scale.py _child ...``; its JSON answer plus ``peak_gib`` and ``wall_s``."""
    command = [sys.executable, __file__, "_child", *args]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(process.pid))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        done.set()
        return {"error": f"timeout after {timeout:.0f} s", "peak_gib": peak / 2**30}
    done.set()
    sampler.join()
    wall = time.perf_counter() - started
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        return {
            "error": (err.strip().splitlines() or ["failed"])[-1][:200],
            "peak_gib": peak / 2**30,
        }
    result: dict[str, Any] = json.loads(lines[-1])
    result.update(peak_gib=peak / 2**30, wall_s=wall)
    return result


# -- what the children do ------------------------------------------------------------------------
def _load(path: str) -> tuple[Any, float]:
    from rekko.data.dataset import Dataset
    from rekko.data.readers import read_interactions

    started = time.perf_counter()
    dataset = Dataset.from_frame(read_interactions(path), name=Path(path).stem)
    return dataset, time.perf_counter() - started


def child_fit(method: str, path: str) -> dict[str, Any]:
    if method == "spark-als":
        from rekko.spark import train_spark_als

        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            train_spark_als(
                path,
                output=Path(folder) / "model",
                master="local[2]",
                spark_config={"spark.driver.memory": "12g", "spark.local.dir": folder},
            )
            meta = json.loads((Path(folder) / "model" / "model.json").read_text())["metadata"]
        return {
            "total_s": time.perf_counter() - started,
            "fit_s": meta["train_seconds"],
            "users": meta["n_users"],
            "items": meta["n_items"],
            "pairs": meta["n_interactions"],
        }
    from rekko.models import create_model

    dataset, load_s = _load(path)
    result = {
        "load_s": load_s,
        "users": dataset.n_users,
        "items": dataset.n_items,
        "pairs": len(dataset),
    }
    if method != "load":
        started = time.perf_counter()
        create_model(method).fit(dataset)
        result["fit_s"] = time.perf_counter() - started
    return result


def child_latency(n_items: int, queries: int) -> dict[str, Any]:
    """One user at a time through ``recommend``: brute force, then the HNSW index."""
    import scipy.sparse as sp

    from rekko.data.idmap import IdMap
    from rekko.models.spark_als import SparkALS, SparkALSParams

    rng = np.random.default_rng(42)
    n_users, dims = 2_000, 64
    items = rng.standard_normal((n_items, dims)).astype(np.float32)
    items *= rng.lognormal(0.0, 0.3, (n_items, 1)).astype(np.float32)  # popularity in the norm
    users = rng.standard_normal((n_users, dims)).astype(np.float32)
    rows = np.repeat(np.arange(n_users), 20)
    seen = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, rng.integers(0, n_items, len(rows)))),
        shape=(n_users, n_items),
    )
    model = SparkALS.from_factors(
        SparkALSParams(factors=dims),
        users=IdMap(list(range(n_users)), "int"),
        items=IdMap(list(range(n_items)), "int"),
        seen=seen,
        user_factors=users,
        item_factors=items,
        rating_stats=None,
        metadata={},
    )
    asked = rng.choice(n_users, queries, replace=False).tolist()
    result: dict[str, Any] = {"items": n_items}
    answers: dict[str, list[set[int]]] = {}
    for mode in ("exact", "ann"):
        model.index_mode = mode
        if mode == "ann":
            started = time.perf_counter()
            model.recommend(asked[:1], k=10)
            result["build_s"] = time.perf_counter() - started
        model.recommend(asked[:5], k=10)  # warm up
        times, search_times, found = [], [], []
        for user in asked:
            started = time.perf_counter()
            recs = model.recommend([user], k=10)
            times.append(time.perf_counter() - started)
            found.append(set(recs["item_id"].tolist()))
            # The search alone (scores or graph, exclusion of seen items, top 10), without
            # the id mapping and DataFrame that recommend adds.
            started = time.perf_counter()
            model._top_k(np.asarray([user]), 10, None, True)
            search_times.append(time.perf_counter() - started)
        answers[mode] = found
        for label, values in (("", times), ("search_", search_times)):
            milliseconds = np.asarray(values) * 1000
            result[f"{mode}_{label}p50_ms"] = float(np.percentile(milliseconds, 50))
            result[f"{mode}_{label}p99_ms"] = float(np.percentile(milliseconds, 99))
    result["recall_at_10"] = float(
        np.mean([len(a & e) / 10 for a, e in zip(answers["ann"], answers["exact"], strict=True)])
    )
    return result


# -- the parent ---------------------------------------------------------------------------------
def run_sizes(sizes: list[str], methods: list[str], workdir: Path, timeout: float) -> pd.DataFrame:
    rows = []
    for size in sizes:
        events = SIZES[size]
        path = workdir / f"events-{size}.parquet"
        if not path.exists():
            started = time.perf_counter()
            generate(Shape.for_events(events), path)
            print(f"generated {path} in {time.perf_counter() - started:.1f} s", flush=True)
        for method in methods:
            if method == "ease" and Shape.for_events(events).items > 40_000:
                rows.append({"events": size, "method": method, "error": "catalogue > 40k items"})
                continue
            load = os.getloadavg()[0]
            result = run_child(["fit", method, str(path)], timeout)
            result.update(events=size, method=method, load_avg=load)
            print(json.dumps(result), flush=True)
            rows.append(result)
    return pd.DataFrame(rows)


def run_latency(catalogues: list[str], queries: int, timeout: float) -> pd.DataFrame:
    rows = []
    for name in catalogues:
        load = os.getloadavg()[0]
        result = run_child(["latency", str(CATALOGUES[name]), str(queries)], timeout)
        result.update(catalogue=name, load_avg=load)
        print(json.dumps(result), flush=True)
        rows.append(result)
    return pd.DataFrame(rows)


def _table(frame: pd.DataFrame, columns: list[str]) -> str:
    present = [column for column in columns if column in frame.columns]
    return markdown_table(frame[present].astype(object).fillna(""), digits=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1m,10m", help=f"comma list of {', '.join(SIZES)}")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--latency", default="10k,100k,1m", help="catalogue sizes, or ''")
    parser.add_argument("--queries", type=int, default=300, help="users timed per catalogue")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "rekko-bench")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    parser.add_argument("--name", default="scale", help="results/<name>.md is written")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    parts = [f"# Scale benchmark\n\n{header()}, load average at start {os.getloadavg()[0]:.1f}\n"]
    sizes = [s for s in args.sizes.split(",") if s]
    if sizes:
        frame = run_sizes(sizes, args.methods.split(","), args.workdir, args.timeout)
        columns = ["events", "method", "pairs", "users", "items", "load_s", "fit_s", "total_s"]
        columns += ["wall_s", "peak_gib", "load_avg", "error"]
        parts.append("## Load and fit\n\n" + _table(frame, columns))
    catalogues = [c for c in args.latency.split(",") if c]
    if catalogues:
        frame = run_latency(catalogues, args.queries, args.timeout)
        columns = ["catalogue", "exact_p50_ms", "exact_p99_ms", "exact_search_p99_ms", "build_s"]
        columns += ["ann_p50_ms", "ann_p99_ms", "ann_search_p50_ms", "ann_search_p99_ms"]
        columns += ["recall_at_10", "peak_gib", "load_avg", "error"]
        parts.append("## One user's top-10 through recommend\n\n" + _table(frame, columns))
    path = write_result(args.name, "\n\n".join(parts))
    print(f"wrote {path}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        kind = sys.argv[2]
        if kind == "fit":
            answer = child_fit(sys.argv[3], sys.argv[4])
        else:
            answer = child_latency(int(sys.argv[3]), int(sys.argv[4]))
        print(json.dumps(answer), flush=True)
    else:
        main()
