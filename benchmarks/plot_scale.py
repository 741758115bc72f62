"""Draw the scale curves of ``scale.md`` from ``results/scale-summary.csv`` into ``images/``.

The summary holds the figures of the runs that ``scale.md`` reports (``results/scale*.md``),
one row per measurement: ``kind`` is ``fit`` or ``load`` (seconds and peak GiB per log size)
or ``latency_p50`` / ``latency_p99`` (seconds for one user's top-10 per catalogue size).

Usage::

    .venv/bin/python benchmarks/plot_scale.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

HERE = Path(__file__).resolve().parent
SUMMARY = HERE / "results" / "scale-summary.csv"
IMAGES = HERE / "images"


def _axes(title: str, xlabel: str, ylabel: str) -> tuple[plt.Figure, plt.Axes]:
    figure, axes = plt.subplots(figsize=(6.4, 4.0))
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel, xscale="log", yscale="log")
    axes.grid(True, which="both", alpha=0.3)
    return figure, axes


def _save(figure: plt.Figure, name: str) -> None:
    figure.tight_layout()
    figure.savefig(IMAGES / name, metadata={"Date": None})
    plt.close(figure)
    print(f"wrote {IMAGES / name}")


def plot_fit(frame: pd.DataFrame) -> None:
    rows = frame[frame["kind"].isin(["fit", "load"])]
    for column, name, title, label in (
        ("seconds", "scale-fit.svg", "fit time (load alone for 'load')", "seconds"),
        ("peak_gib", "scale-memory.svg", "peak resident memory", "GiB"),
    ):
        figure, axes = _axes(f"{title} vs events, 2 cores", "events", label)
        for method, group in rows.groupby("method", sort=False):
            group = group.sort_values("size")
            axes.plot(group["size"], group[column], marker="o", label=method)
        if column == "seconds":
            axes.axhline(120, color="grey", linestyle=":", label="target: ALS on 10M < 2 min")
        else:
            axes.axhline(8, color="grey", linestyle=":", label="target: ALS on 10M < 8 GB")
        axes.legend(fontsize=8)
        _save(figure, name)


def plot_latency(frame: pd.DataFrame) -> None:
    figure, axes = _axes("one user's top-10 through recommend", "items in the catalogue", "ms")
    colors = {"exact": "tab:red", "ann": "tab:blue"}
    for kind, style in (("latency_p50", "--"), ("latency_p99", "-")):
        rows = frame[frame["kind"] == kind]
        for method, group in rows.groupby("method", sort=False):
            group = group.sort_values("size")
            label = f"{'brute force' if method == 'exact' else 'HNSW index'} {kind[-3:]}"
            seconds = group["seconds"] * 1000
            axes.plot(group["size"], seconds, style, color=colors[method], marker="o", label=label)
    axes.axhline(5, color="grey", linestyle=":", label="target: index p99 < 5 ms at 1M")
    axes.legend(fontsize=8)
    _save(figure, "scale-latency.svg")


def main() -> None:
    IMAGES.mkdir(exist_ok=True)
    frame = pd.read_csv(SUMMARY)
    plot_fit(frame)
    plot_latency(frame)


if __name__ == "__main__":
    main()
