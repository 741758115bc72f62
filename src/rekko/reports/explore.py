"""Exploratory report of one data set: what is in it, how skewed and sparse it is, over time.

The numbers come from :mod:`rekko.reports.stats` (see there for what counts as an interaction);
this module draws them and lays out the page.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from rekko.data.dataset import Dataset
from rekko.reports import html as h
from rekko.reports.charts import (
    ACCENT,
    DIVERGING,
    MUTED,
    ChartWriter,
    ImageFormat,
    add_axes,
    chart_style,
    color,
    label_bars,
    new_figure,
    plain,
    plain_log_axis,
)
from rekko.reports.stats import (
    ACTIVITY_BUCKETS,
    MAX_EVENT_TYPES,
    SECONDS_PER_DAY,
    activity_correlations,
    bucket_shares,
    cold_start_table,
    event_counts,
    feature_coverage,
    gini,
    time_table,
    top_share_table,
    user_counts,
)

logger = logging.getLogger(__name__)

_TOP_N = 10


def _records(frame: pd.DataFrame, *columns: str) -> list[tuple[Any, ...]]:
    """Rows of the chosen columns as plain Python values (for tables and labels)."""
    return list(zip(*(frame[column].tolist() for column in columns), strict=True))


def _time_frequencies(span_days: float) -> tuple[str, str, str, str]:
    """(chart frequency, its name, table frequency, its name) for a span of days."""
    if span_days <= 180:
        chart = ("D", "day")
    elif span_days <= 3 * 365:
        chart = ("W", "week")
    else:
        chart = ("M", "month")
    table = ("M", "month") if span_days <= 2 * 366 else ("Y", "year")
    return chart[0], chart[1], table[0], table[1]


def _quantile_rows(counts: npt.NDArray[np.int64]) -> list[list[h.Cell]]:
    if len(counts) == 0:
        return []
    stats = [
        ("minimum", float(counts.min())),
        ("25th percentile", float(np.percentile(counts, 25))),
        ("median", float(np.median(counts))),
        ("mean", float(counts.mean())),
        ("75th percentile", float(np.percentile(counts, 75))),
        ("90th percentile", float(np.percentile(counts, 90))),
        ("99th percentile", float(np.percentile(counts, 99))),
        ("maximum", float(counts.max())),
    ]
    return [[name, h.format_number(value)] for name, value in stats]


# --------------------------------------------------------------------------------- report


def explore_report(
    dataset: Dataset,
    path: str | Path,
    *,
    image_format: ImageFormat | None = None,
    title: str | None = None,
) -> Path:
    """Write an exploratory HTML report of ``dataset`` to ``path`` and return the path.

    The page is self-contained (inline CSS and SVG, no scripts, no network). With
    ``image_format`` ("svg" or "png") every chart is also written as a file into the folder
    ``<path stem>_charts`` beside the page.
    """
    path = Path(path)
    writer = ChartWriter(path.parent / f"{path.stem}_charts", image_format)
    summary = dataset.summary()
    n_raw = int(dataset.interactions["count"].sum())
    headline = [
        ("Users", h.format_int(summary["users"])),
        ("Items", h.format_int(summary["items"])),
        ("Interactions", h.format_int(summary["interactions"])),
        ("Density", h.format_share(summary["density"], 2)),
    ]
    if n_raw != len(dataset):
        headline.append(("Raw events", h.format_int(n_raw)))
    kind = "explicit ratings" if dataset.explicit else "implicit feedback"
    page = h.Page(
        title or f"Data set report: {dataset.name}",
        f"{dataset.name}: {kind}. An interaction is one user-item pair after aggregating "
        "repeated events.",
        headline,
    )
    sections: tuple[Callable[[h.Page, Dataset, ChartWriter], None], ...] = (
        _overview,
        _events,
        _long_tail,
        _users,
        _time,
        _sparsity,
        _ratings,
        _features,
        _correlations,
    )
    with chart_style():
        for build in sections:
            build(page, dataset, writer)
    logger.info("explore report of %s written to %s", dataset.name, path)
    return page.write(path)


def _overview(page: h.Page, dataset: Dataset, writer: ChartWriter) -> None:
    summary = dataset.summary()
    n_raw = int(dataset.interactions["count"].sum())
    rows: list[list[h.Cell]] = [
        ["Users", h.format_int(dataset.n_users)],
        ["Items", h.format_int(dataset.n_items)],
        ["Interactions (user-item pairs)", h.format_int(len(dataset))],
        ["Raw events aggregated into them", h.format_int(n_raw)],
        ["Density (pairs / users \u00d7 items)", h.format_share(summary["density"], 3)],
        ["Feedback", "explicit ratings" if dataset.explicit else "implicit"],
        ["Event types", ", ".join(summary["event_types"]) or "none"],
        ["Users without interactions", h.format_int(summary["users_without_interactions"])],
        ["Items without interactions", h.format_int(summary["items_without_interactions"])],
        [
            "Item features",
            ", ".join(dataset.item_features.kinds) if dataset.item_features else "none",
        ],
        [
            "User features",
            ", ".join(dataset.user_features.kinds) if dataset.user_features else "none",
        ],
    ]
    if dataset.has_timestamps:
        seconds = dataset.interactions["timestamp"]
        first = pd.to_datetime(int(seconds.min()), unit="s")
        last = pd.to_datetime(int(seconds.max()), unit="s")
        rows.append(["Time span (UTC)", f"{first:%Y-%m-%d} to {last:%Y-%m-%d}"])
    page.section("overview", "Overview").add(
        h.table(["Measure", "Value"], rows, caption="The data set in numbers")
    )


def _events(page: h.Page, dataset: Dataset, writer: ChartWriter) -> None:
    section = page.section(
        "events",
        "Interactions per event type",
        "Each user-item pair counts once, under its strongest event type (a pair that was viewed "
        "and bought counts as a purchase).",
    )
    events = event_counts(dataset)
    if events is None:
        section.add(h.note("This data set has no event types (one kind of interaction)."))
        return
    names = [str(name) for name in events["event"]]
    counts = events["interactions"].to_numpy()
    figure = new_figure(1.4 + 0.5 * len(names))
    axes = add_axes(figure)
    positions = np.arange(len(names))
    axes.barh(positions, counts, color=[color(i) for i in range(len(names))], height=0.6)
    axes.set_yticks(positions, [plain(name) for name in names])
    axes.invert_yaxis()
    axes.set_xlabel("Interactions (user-item pairs)")
    axes.set_ylabel("Strongest event type")
    axes.set_title("Interactions per event type")
    axes.grid(axis="y", visible=False)
    axes.set_xlim(0, counts.max() * 1.18)
    label_bars(
        axes,
        counts.tolist(),
        [
            f"{h.format_int(c)} ({h.format_share(s)})"
            for c, s in zip(counts, events["share"], strict=True)
        ],
        horizontal=True,
    )
    alt = "Bar chart of interactions per event type: " + "; ".join(
        f"{name} {h.format_int(count)}" for name, count in zip(names, counts, strict=True)
    )
    rows: list[list[h.Cell]] = [
        [name, h.format_int(count), h.format_share(share), h.format_int(raw)]
        for name, count, share, raw in _records(
            events, "event", "interactions", "share", "raw_events"
        )
    ]
    rows.append(
        [
            "all",
            h.format_int(len(dataset)),
            "100.0%",
            h.format_int(int(dataset.interactions["count"].sum())),
        ]
    )
    section.add(
        h.figure(writer.render(figure, "events", "Interactions per event type", alt)),
        h.table(
            ["Event type", "Interactions", "Share", "Raw events in these pairs"],
            rows,
            caption="Interactions per event type",
        ),
    )


def _long_tail(page: h.Page, dataset: Dataset, writer: ChartWriter) -> None:
    popularity = np.asarray(dataset.item_popularity, dtype=np.int64)
    ordered = np.sort(popularity)[::-1]
    shares = top_share_table(popularity)
    coefficient = gini(popularity)
    section = page.section(
        "popularity",
        "Long tail of item popularity",
        "Items sorted from most to least popular (number of users who interacted with each). "
        f"Gini coefficient {coefficient:.3f}: 0 would mean every item is equally popular.",
    )
    figure = new_figure(3.8)
    left = add_axes(figure, 1, 2, 1)
    ranks = np.arange(1, len(ordered) + 1)
    positive = ordered > 0
    left.fill_between(ranks[positive], ordered[positive], color=ACCENT, alpha=0.18, step="post")
    left.step(ranks[positive], ordered[positive], where="post", color=ACCENT)
    if positive.any():
        left.set_yscale("log")
        plain_log_axis(left, "y")
    cut = max(1, math.ceil(0.2 * len(ordered)))
    left.axvline(cut, color=MUTED, linestyle="--", linewidth=1)
    left.annotate(
        " top 20%", (cut, 1), xycoords=("data", "axes fraction"), va="top", color=MUTED, fontsize=9
    )
    left.set_xlabel("Item rank (most popular first)")
    left.set_ylabel("Interactions per item (log scale)")
    left.set_title("Sorted item popularity")

    right = add_axes(figure, 1, 2, 2)
    total = max(int(ordered.sum()), 1)
    item_share = np.r_[0.0, ranks / max(len(ordered), 1)]
    held = np.r_[0.0, np.cumsum(ordered) / total]
    right.plot(item_share * 100, held * 100, color=ACCENT)
    right.plot(
        [0, 100], [0, 100], color=MUTED, linestyle=":", linewidth=1, label="equal popularity"
    )
    share_records = _records(shares, "top", "items", "interactions", "share")
    for index, (top, n_items, _, share) in enumerate(share_records):
        x_value, y_value = 100 * n_items / max(len(ordered), 1), 100 * share
        right.plot([x_value], [y_value], "o", color=color(index + 1))
        right.annotate(
            f"top {h.format_share(top, 0)}: {h.format_share(share)}",
            (x_value, y_value),
            xytext=(8, -4),
            textcoords="offset points",
            va="top",
            fontsize=9,
        )
    right.set_xlim(0, 100)
    right.set_ylim(0, 102)
    right.set_xlabel("Share of items, most popular first (%)")
    right.set_ylabel("Share of interactions held (%)")
    right.set_title("Concentration")
    right.legend(loc="lower right")
    alt = (
        f"Long tail of {h.format_int(len(ordered))} items: the most popular has "
        f"{h.format_int(ordered[0] if len(ordered) else 0)} interactions; "
        + "; ".join(
            f"top {h.format_share(top, 0)} of items hold {h.format_share(share)}"
            for top, _, _, share in share_records
        )
    )
    share_rows: list[list[h.Cell]] = [
        [
            f"Top {h.format_share(top, 0)}",
            h.format_int(n),
            h.format_int(held),
            h.format_share(share),
        ]
        for top, n, held, share in share_records
    ]
    top_items = np.argsort(-popularity, kind="stable")[:_TOP_N]
    external = dataset.items.to_external(top_items)
    top_rows: list[list[h.Cell]] = [
        [
            str(rank + 1),
            str(item_id),
            h.format_int(popularity[item]),
            h.format_share(popularity[item] / total),
        ]
        for rank, (item, item_id) in enumerate(zip(top_items, external, strict=True))
    ]
    section.add(
        h.figure(writer.render(figure, "long-tail", "Long tail of item popularity", alt)),
        h.table(
            ["Most popular items", "Items", "Interactions", "Share of all"],
            share_rows,
            caption="Interactions held by the most popular items",
        ),
        h.table(
            ["Rank", "Item", "Interactions", "Share"],
            top_rows,
            caption=f"The {len(top_rows)} most popular items",
            text_columns=2,
        ),
    )


def _users(page: h.Page, dataset: Dataset, writer: ChartWriter) -> None:
    counts = user_counts(dataset)
    active = counts[counts > 0]
    section = page.section(
        "users",
        "Activity per user",
        "How many items each user interacted with. Users without interactions are left out "
        "here and counted under sparsity.",
    )
    if len(active) == 0:
        section.add(h.note("No user has interactions."))
        return
    figure = new_figure(3.8)
    left = add_axes(figure, 1, 2, 1)
    low, high = int(active.min()), int(active.max())
    if high / max(low, 1) > 50:
        bins: list[float] = np.unique(np.geomspace(max(low, 1), high + 1, 30).round()).tolist()
        left.set_xscale("log")
        plain_log_axis(left, "x")
        scale_note = " (log scale)"
    else:
        bins = np.histogram_bin_edges(active, bins=min(30, high - low + 1)).tolist()
        scale_note = ""
    left.hist(active, bins=bins, color=ACCENT, edgecolor="white", linewidth=0.5)
    left.axvline(
        float(np.median(active)), color=color(1), linestyle="--", linewidth=1.5, label="median"
    )
    left.legend()
    left.set_xlabel(f"Interactions per user{scale_note}")
    left.set_ylabel("Users")
    left.set_title("Interactions per user")

    right = add_axes(figure, 1, 2, 2)
    top = np.argsort(-counts, kind="stable")[:_TOP_N]
    top_ids = [str(u) for u in dataset.users.to_external(top)]
    positions = np.arange(len(top))
    right.barh(positions, counts[top], color=color(2), height=0.6)
    right.set_yticks(positions, [plain(uid) for uid in top_ids])
    right.invert_yaxis()
    right.grid(axis="y", visible=False)
    right.set_xlim(0, counts[top].max() * 1.15)
    label_bars(right, counts[top].tolist(), [h.format_int(c) for c in counts[top]], horizontal=True)
    right.set_xlabel("Interactions")
    right.set_ylabel("User")
    right.set_title(f"Top {len(top)} users")
    alt = (
        f"Histogram of interactions per user for {h.format_int(len(active))} active users: "
        f"median {h.format_number(float(np.median(active)))}, maximum {h.format_int(high)}. "
        "Top users: "
        + "; ".join(f"{uid} {h.format_int(counts[u])}" for uid, u in zip(top_ids, top, strict=True))
    )
    raw_events = np.bincount(
        dataset.interactions["user"].to_numpy(),
        weights=dataset.interactions["count"].to_numpy(dtype=np.float64),
        minlength=dataset.n_users,
    )
    show_raw = bool((raw_events != counts).any())  # explicit data: one event per pair
    total = max(len(dataset), 1)
    top_rows: list[list[h.Cell]] = [
        [
            str(rank + 1),
            uid,
            h.format_int(counts[user]),
            *([h.format_int(raw_events[user])] if show_raw else []),
            h.format_share(counts[user] / total),
        ]
        for rank, (uid, user) in enumerate(zip(top_ids, top, strict=True))
    ]
    section.add(
        h.figure(writer.render(figure, "users", "Activity per user", alt)),
        h.table(
            ["Statistic", "Interactions per user"],
            _quantile_rows(active),
            caption="Distribution over active users",
        ),
        h.table(
            ["Rank", "User", "Interactions", *(["Raw events"] if show_raw else []), "Share of all"],
            top_rows,
            caption=f"The {len(top_rows)} most active users",
            text_columns=2,
        ),
    )


def _time(page: h.Page, dataset: Dataset, writer: ChartWriter) -> None:
    section = page.section(
        "time",
        "Activity over time",
        "Interactions by the time of each pair's latest event (UTC).",
    )
    if not dataset.has_timestamps:
        section.add(h.note("This data set has no timestamps, so activity over time is not shown."))
        return
    seconds = dataset.interactions["timestamp"].to_numpy(dtype=np.int64)
    span_days = float(seconds.max() - seconds.min()) / SECONDS_PER_DAY
    chart_freq, chart_name, table_freq, table_name = _time_frequencies(span_days)
    series = time_table(dataset, chart_freq)
    events = [c for c in series.columns if c not in ("period", "interactions", "active users")]
    figure = new_figure(3.8)
    axes = add_axes(figure)
    periods = pd.DatetimeIndex(series["period"]).to_pydatetime()
    if len(events) > 1:
        axes.plot(periods, series["interactions"], color="#3E4C59", label="all", linewidth=2.2)
    for index, event in enumerate(events[:MAX_EVENT_TYPES]):
        axes.plot(periods, series[event], color=color(index), label=plain(event), linewidth=1.6)
    if not events:
        axes.plot(periods, series["interactions"], color=ACCENT, label="interactions")
    axes.set_ylim(bottom=0)
    axes.set_xlabel(f"{chart_name.capitalize()} (UTC)")
    axes.set_ylabel(f"Interactions per {chart_name}")
    axes.set_title(f"Interactions per {chart_name}")
    axes.legend(ncols=min(len(events) + 1, 4), loc="upper left")
    busiest = int(np.argmax(series["interactions"].to_numpy()))
    starts = series["period"].tolist()
    alt = (
        f"Line chart of interactions per {chart_name} from {starts[0]:%Y-%m-%d} to "
        f"{starts[-1]:%Y-%m-%d}; busiest {chart_name} starts {starts[busiest]:%Y-%m-%d} with "
        f"{h.format_int(series['interactions'].iloc[busiest])} interactions."
    )
    table = time_table(dataset, table_freq)
    label_format = "%Y-%m" if table_freq == "M" else "%Y"
    header = [table_name.capitalize(), *events, "Interactions", "Active users"]
    rows: list[list[h.Cell]] = [
        [f"{record[0]:{label_format}}", *[h.format_int(value) for value in record[1:]]]
        for record in _records(table, "period", *events, "interactions", "active users")
    ]
    section.add(
        h.figure(writer.render(figure, "time", f"Interactions per {chart_name}", alt)),
        h.table(header, rows, caption=f"Interactions per {table_name}"),
    )


def _sparsity(page: h.Page, dataset: Dataset, writer: ChartWriter) -> None:
    summary = dataset.summary()
    section = page.section(
        "sparsity",
        "Sparsity and cold start",
        f"Only {h.format_share(summary['density'], 3)} of all user-item pairs hold an "
        "interaction. Users and items with few interactions are hard for collaborative models: "
        "features or popularity have to stand in for them.",
    )
    users = user_counts(dataset)
    items = np.asarray(dataset.item_popularity)
    labels = [label for label, _, _ in ACTIVITY_BUCKETS]
    user_shares, item_shares = bucket_shares(users), bucket_shares(items)
    figure = new_figure(3.6)
    axes = add_axes(figure)
    positions = np.arange(len(labels))
    width = 0.38
    axes.bar(
        positions - width / 2, np.array(user_shares) * 100, width, color=color(0), label="users"
    )
    axes.bar(
        positions + width / 2, np.array(item_shares) * 100, width, color=color(1), label="items"
    )
    axes.set_xticks(positions, labels)
    axes.set_xlabel("Interactions")
    axes.set_ylabel("Share (%)")
    axes.set_title("Users and items by number of interactions")
    axes.grid(axis="x", visible=False)
    axes.legend()
    cold = cold_start_table(dataset)
    alt = "Grouped bar chart of users and items by number of interactions. " + "; ".join(
        f"{label}: users {h.format_share(u)}, items {h.format_share(i)}"
        for label, u, i in zip(labels, user_shares, item_shares, strict=True)
    )
    rows: list[list[h.Cell]] = [
        [side, group, h.format_int(count), h.format_share(share)]
        for side, group, count, share in _records(cold, "side", "group", "count", "share")
    ]
    bucket_rows: list[list[h.Cell]] = [
        [label, h.format_share(u), h.format_share(i)]
        for label, u, i in zip(labels, user_shares, item_shares, strict=True)
    ]
    section.add(
        h.figure(
            writer.render(figure, "sparsity", "Users and items by number of interactions", alt)
        ),
        h.table(
            ["Who", "Group", "Count", "Share"], rows, caption="Cold-start shares", text_columns=2
        ),
        h.table(["Interactions", "Users", "Items"], bucket_rows, caption="Shares per bucket"),
    )


def _ratings(page: h.Page, dataset: Dataset, writer: ChartWriter) -> None:
    values = dataset.interactions["value"].to_numpy(dtype=np.float64)
    if dataset.explicit:
        section = page.section("ratings", "Rating distribution", "How often each rating was given.")
        what, chart_title = "Rating", "Ratings"
    else:
        section = page.section(
            "ratings",
            "Rating distribution",
            "Implicit data has no ratings; shown instead is each interaction's strength "
            "(its value: summed event weights or counts).",
        )
        what, chart_title = "Interaction value", "Interaction values"
    if len(values) == 0 or values.min() == values.max():
        only = h.format_number(float(values[0])) if len(values) else h.MISSING
        section.add(h.note(f"Every interaction has the same value ({only}): nothing to plot."))
        return
    distinct = np.unique(values)
    figure = new_figure(3.4)
    axes = add_axes(figure)
    if len(distinct) <= 20:
        counts = np.array([(values == value).sum() for value in distinct])
        labels = [h.format_number(float(value)) for value in distinct]
        positions = np.arange(len(distinct))
        axes.bar(positions, counts, color=ACCENT, width=0.7)
        axes.set_xticks(positions, labels)
        axes.grid(axis="x", visible=False)
        axes.set_ylim(0, counts.max() * 1.15)
        label_bars(
            axes,
            counts.tolist(),
            [h.format_share(c / len(values)) for c in counts],
            horizontal=False,
        )
    else:
        counts, edges = np.histogram(values, bins=20)
        labels = [
            f"{h.format_number(float(low))}\u2013{h.format_number(float(high))}"
            for low, high in itertools.pairwise(edges)
        ]
        axes.hist(values, bins=edges.tolist(), color=ACCENT, edgecolor="white", linewidth=0.5)
    axes.set_xlabel(what)
    axes.set_ylabel("Interactions")
    axes.set_title(chart_title)
    alt = f"Bar chart of {what.lower()}s: " + "; ".join(
        f"{label}: {h.format_int(count)}" for label, count in zip(labels, counts, strict=True)
    )
    rows: list[list[h.Cell]] = [
        [label, h.format_int(count), h.format_share(count / len(values))]
        for label, count in zip(labels, counts, strict=True)
    ]
    mean_text = (
        f"Mean {h.format_number(float(values.mean()))}, "
        f"median {h.format_number(float(np.median(values)))}."
    )
    section.add(
        h.figure(writer.render(figure, "ratings", chart_title, alt), mean_text),
        h.table([what, "Interactions", "Share"], rows, caption=f"{chart_title} in numbers"),
    )


def _features(page: h.Page, dataset: Dataset, writer: ChartWriter) -> None:
    section = page.section(
        "features",
        "Feature coverage",
        "Share of all items and users (including those without interactions) for which each "
        "feature is present. Content and hybrid models can only use what is there.",
    )
    coverage = feature_coverage(dataset)
    if coverage.empty:
        section.add(h.note("This data set has no item or user features."))
        return
    labels = [
        f"{side}: {feature}"
        for side, feature in zip(coverage["side"], coverage["feature"], strict=True)
    ]
    shares = coverage["share"].to_numpy() * 100
    colors = [color(0) if side == "item" else color(1) for side in coverage["side"]]
    figure = new_figure(1.3 + 0.36 * len(labels))
    axes = add_axes(figure)
    positions = np.arange(len(labels))
    axes.barh(positions, shares, color=colors, height=0.6)
    axes.set_yticks(positions, [plain(label) for label in labels])
    axes.invert_yaxis()
    axes.set_xlim(0, 115)
    axes.set_xticks([0, 25, 50, 75, 100])
    axes.grid(axis="y", visible=False)
    label_bars(axes, shares.tolist(), [h.format_share(s / 100) for s in shares], horizontal=True)
    axes.set_xlabel("Present (%)")
    axes.set_title("Feature coverage")
    alt = "Bar chart of feature coverage: " + "; ".join(
        f"{label} {h.format_share(share / 100)}"
        for label, share in zip(labels, shares, strict=True)
    )
    rows: list[list[h.Cell]] = [
        [
            str(side),
            str(feature),
            str(kind),
            h.format_int(present),
            h.format_share(share),
            h.MISSING if distinct is None or pd.isna(distinct) else h.format_int(distinct),
        ]
        for side, feature, kind, present, share, distinct in _records(
            coverage, "side", "feature", "kind", "present", "share", "distinct"
        )
    ]
    section.add(
        h.figure(writer.render(figure, "features", "Feature coverage", alt)),
        h.table(
            ["Of", "Feature", "Kind", "Present", "Share", "Distinct values"],
            rows,
            caption="Feature coverage",
            text_columns=3,
        ),
    )


def _correlations(page: h.Page, dataset: Dataset, writer: ChartWriter) -> None:
    section = page.section(
        "correlations",
        "How user activity measures relate",
        "Spearman rank correlation between measures of each active user's behaviour: distinct "
        "items, raw events, mean value, mean popularity of the items, active days and span, the "
        "share of each event type, and numeric user features.",
    )
    matrix = activity_correlations(dataset)
    if len(matrix.columns) < 2:
        section.add(h.note("Fewer than two varying activity measures: no correlations to show."))
        return
    names = [str(name) for name in matrix.columns]
    values = matrix.to_numpy(dtype=np.float64)
    figure = new_figure(min(2.0 + 0.55 * len(names), 9.0))
    axes = add_axes(figure)
    image = axes.imshow(values, cmap=DIVERGING, vmin=-1, vmax=1)
    shown = [plain(name) for name in names]
    axes.set_xticks(np.arange(len(names)), shown, rotation=40, ha="right", rotation_mode="anchor")
    axes.set_yticks(np.arange(len(names)), shown)
    axes.grid(False)
    for row in range(len(names)):
        for column in range(len(names)):
            value = values[row, column]
            if np.isfinite(value):
                axes.text(
                    column,
                    row,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="white" if abs(value) > 0.6 else "#1F2933",
                )
    figure.colorbar(image, ax=axes, shrink=0.8, label="Spearman correlation")
    axes.set_title("Correlation of per-user activity measures")
    pairs = [
        (abs(values[i, j]), names[i], names[j], values[i, j])
        for i in range(len(names))
        for j in range(i + 1, len(names))
        if np.isfinite(values[i, j])
    ]
    strongest = sorted(pairs, reverse=True)[:3]
    alt = "Correlation heatmap of per-user activity measures. Strongest: " + "; ".join(
        f"{a} and {b} {value:.2f}" for _, a, b, value in strongest
    )
    rows: list[list[h.Cell]] = [
        [name, *[f"{v:.2f}" if np.isfinite(v) else h.MISSING for v in values[index]]]
        for index, name in enumerate(names)
    ]
    section.add(
        h.figure(
            writer.render(figure, "correlations", "Correlation of per-user activity measures", alt),
            f"Computed over {h.format_int(int((user_counts(dataset) > 0).sum()))} users "
            "with interactions.",
        ),
        h.table(["", *names], rows, caption="Spearman correlations"),
    )
