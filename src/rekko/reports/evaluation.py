"""Compare evaluated models in one HTML page, with the uncertainty of each number.

:func:`evaluation_report` draws the page from :func:`rekko.reports.details.evaluate_with_details`'s
result (error bars and metric-vs-K curves included), or from a plain
:func:`rekko.evaluation.evaluate` table (then without them).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rekko.evaluation import metrics as m
from rekko.reports import html as h
from rekko.reports.charts import (
    MUTED,
    TEXT,
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
from rekko.reports.details import REFERENCE_COLUMNS, EvaluationDetails

logger = logging.getLogger(__name__)

#: Error bars and ± in the tables are this many standard errors (a 95% normal interval).
Z_95 = 1.96
#: Metrics where a larger value is better (the report marks the best model in bold).
HIGHER_IS_BETTER: frozenset[str] = frozenset(
    (*m.RANKING_METRICS, "top_k_accuracy", "coverage", "novelty", "diversity")
)
LOWER_IS_BETTER: frozenset[str] = frozenset(("rmse", "mae", "fit_s", "recommend_s"))
_CURVE_ORDER: tuple[str, ...] = (
    "ndcg",
    "recall",
    "precision",
    "hit_rate",
    "map",
    "mrr",
    "coverage",
)
_METRIC_NAMES: dict[str, str] = {
    "ndcg": "NDCG",
    "recall": "Recall",
    "precision": "Precision",
    "hit_rate": "Hit rate",
    "map": "MAP",
    "map_truncated": "MAP (over min(relevant, k))",
    "mrr": "MRR",
    "coverage": "Coverage",
    "top_k_accuracy": "Top-K accuracy",
    "novelty": "Novelty",
    "popularity": "Avg. popularity",
    "diversity": "Diversity",
}
_PLAIN_NAMES: dict[str, str] = {
    "fit_s": "Training time",
    "recommend_s": "Recommending time",
    "rmse": "RMSE",
    "mae": "MAE",
}
_AT = re.compile(r"^(?P<name>[a-z_]+)@(?P<k>\d+)$")


# --------------------------------------------------------------------------------- report


@dataclass(frozen=True)
class _Columns:
    """Which metrics the table holds, and at which cut-offs."""

    models: list[str]
    ks: list[int]
    main_k: int
    beyond_k: int | None

    @classmethod
    def of(cls, table: pd.DataFrame) -> _Columns:
        if "model" not in table.columns:
            raise ValueError("the evaluation table needs a 'model' column (from evaluate)")
        ks: set[int] = set()
        beyond: int | None = None
        for column in table.columns:
            match = _AT.match(str(column))
            if match is None:
                continue
            if match["name"] in m.RANKING_METRICS:
                ks.add(int(match["k"]))
            elif match["name"] == "coverage":
                beyond = int(match["k"])
        if not ks:
            raise ValueError("the evaluation table has no ranking metric columns such as 'ndcg@10'")
        ordered = sorted(ks)
        main = 10 if 10 in ks else ordered[-1]
        return cls([str(name) for name in table["model"]], ordered, main, beyond)


def _value(table: pd.DataFrame, row: int, column: str) -> float:
    if column not in table.columns:
        return math.nan
    value = table[column].iloc[row]
    return float(value) if value is not None and not pd.isna(value) else math.nan


def _half_width(table: pd.DataFrame, row: int, column: str) -> float:
    """Half-width of the 95% interval of ``column`` (NaN without a standard error)."""
    return Z_95 * _value(table, row, f"{column}_se")


def _label(column: str) -> str:
    if column in _PLAIN_NAMES:
        return _PLAIN_NAMES[column]
    match = _AT.match(column)
    if match is None:
        return column
    return f"{_METRIC_NAMES.get(match['name'], match['name'])}@{match['k']}"


def evaluation_report(
    results: pd.DataFrame | EvaluationDetails,
    path: str | Path,
    *,
    curves: pd.DataFrame | None = None,
    image_format: ImageFormat | None = None,
    title: str = "Model comparison",
    subtitle: str | None = None,
) -> Path:
    """Write an HTML comparison of models evaluated on one split; return the path.

    ``results`` is :func:`evaluate_with_details`'s result (error bars and curves included) or
    a table from :func:`rekko.evaluation.evaluate` (give ``curves`` separately if you have
    them). With ``image_format`` ("svg" or "png") every chart is also written as a file into
    the folder ``<path stem>_charts`` beside the page.
    """
    if isinstance(results, EvaluationDetails):
        table = results.table
        curves = results.curves if curves is None else curves
    else:
        table = results
    if table.empty:
        raise ValueError("the evaluation table is empty: evaluate at least one model")
    table = table.reset_index(drop=True)
    columns = _Columns.of(table)
    path = Path(path)
    writer = ChartWriter(path.parent / f"{path.stem}_charts", image_format)
    page = h.Page(title, subtitle or _default_subtitle(table, columns), _headline(table, columns))
    with chart_style():
        _results(page, table, columns)
        _accuracy(page, table, columns, writer)
        _curves(page, curves, writer)
        _tradeoffs(page, table, columns, writer)
        _popularity(page, table, columns, writer)
        _timing(page, table, columns, writer)
    logger.info("evaluation report written to %s", path)
    return page.write(path)


def _default_subtitle(table: pd.DataFrame, columns: _Columns) -> str:
    users = _value(table, 0, "users")
    who = f" for {h.format_int(users)} test users" if math.isfinite(users) else ""
    return (
        f"{len(columns.models)} models on one split{who}: each model ranks the full catalogue "
        "without the user's training items."
    )


def _headline(table: pd.DataFrame, columns: _Columns) -> list[tuple[str, str]]:
    key = f"ndcg@{columns.main_k}"
    items = [("Models", h.format_int(len(columns.models)))]
    users = _value(table, 0, "users")
    if math.isfinite(users):
        items.append(("Test users", h.format_int(users)))
    cold = _value(table, 0, "cold_users")
    if math.isfinite(cold) and cold > 0:
        items.append(("Cold test users", h.format_int(cold)))
    if key in table.columns:
        best = int(np.nanargmax(table[key].to_numpy(dtype=np.float64)))
        items.append((f"Best {_label(key)}", f"{columns.models[best]}"))
        items.append((_label(key), h.format_metric(_value(table, best, key))))
    return items


def _ordered_columns(table: pd.DataFrame, columns: _Columns) -> list[str]:
    """The table's metric columns in reading order (ranking by K, then the rest)."""
    known = [
        f"{name}@{k}"
        for k in columns.ks
        for name in (*m.RANKING_METRICS, "top_k_accuracy")
        if f"{name}@{k}" in table.columns
    ]
    beyond = [
        f"{name}@{columns.beyond_k}"
        for name in ("coverage", "novelty", "popularity", "diversity")
        if f"{name}@{columns.beyond_k}" in table.columns
    ]
    tail = [c for c in ("rmse", "mae", "fit_s", "recommend_s") if c in table.columns]
    skip = {"model", "users", "cold_users", *REFERENCE_COLUMNS, *known, *beyond, *tail}
    others = [
        str(c)
        for c in table.columns
        if str(c) not in skip
        and not str(c).endswith("_se")
        and pd.api.types.is_numeric_dtype(table[c])
    ]
    return [*known, *beyond, *others, *tail]


def _cell(table: pd.DataFrame, row: int, column: str, *, best: bool) -> h.Markup:
    value = _value(table, row, column)
    text = h.format_seconds(value) if column in ("fit_s", "recommend_s") else h.format_metric(value)
    shown = f'<span class="best">{h.escape(text)}</span>' if best else h.escape(text)
    half = _half_width(table, row, column)
    if math.isfinite(half):
        shown += f'<span class="se"> ± {h.escape(h.format_metric(half))}</span>'
    return h.Markup(shown)


def _best_row(table: pd.DataFrame, column: str) -> int | None:
    match = _AT.match(column)
    name = match["name"] if match else column
    values = table[column].to_numpy(dtype=np.float64)
    if len(values) < 2 or not np.isfinite(values).any():
        return None
    if name in HIGHER_IS_BETTER:
        return int(np.nanargmax(values))
    if name in LOWER_IS_BETTER:
        return int(np.nanargmin(values))
    return None


def _results(page: h.Page, table: pd.DataFrame, columns: _Columns) -> None:
    has_se = any(str(c).endswith("_se") for c in table.columns)
    section = page.section(
        "results",
        "Results",
        "Every number the evaluation measured, one column per model. Bold marks the best model "
        "of each row"
        + (
            "; ± is the half-width of a 95% interval (1.96 standard errors of the per-user mean)."
            if has_se
            else "."
        ),
    )
    rows: list[list[h.Cell]] = []
    for column in _ordered_columns(table, columns):
        best = _best_row(table, column)
        rows.append(
            [
                _label(column),
                *[
                    _cell(table, index, column, best=index == best)
                    for index in range(len(columns.models))
                ],
            ]
        )
    section.add(h.table(["Metric", *columns.models], rows, caption="All metrics"))
    glossary = [
        ("NDCG, MAP, MRR", "ranking quality: hits near the top count more"),
        (
            "Recall, Precision, Hit rate",
            "share of held-out items found, of slots filled, of users served",
        ),
        ("Coverage", "share of the catalogue recommended to at least one user"),
        ("Novelty", "mean self-information of recommended items (higher: less obvious)"),
        ("Avg. popularity", "mean number of training users of the recommended items"),
        ("Diversity", "mean category dissimilarity within each list"),
    ]
    section.add(h.definition_list(glossary))


def _accuracy(page: h.Page, table: pd.DataFrame, columns: _Columns, writer: ChartWriter) -> None:
    k = columns.main_k
    metrics = [f"{name}@{k}" for name in m.RANKING_METRICS if f"{name}@{k}" in table.columns]
    section = page.section(
        "accuracy",
        f"Accuracy at K = {k}",
        "Ranking metrics of each model. Error bars show 95% intervals of the per-user mean; "
        "overlapping bars mean the difference may be noise.",
    )
    figure = new_figure(3.9)
    axes = add_axes(figure)
    n_models = len(columns.models)
    width = 0.8 / n_models
    positions = np.arange(len(metrics))
    has_errors = False
    for index, model in enumerate(columns.models):
        heights = [_value(table, index, column) for column in metrics]
        errors = [_half_width(table, index, column) for column in metrics]
        finite = [e if math.isfinite(e) else 0.0 for e in errors]
        has_errors = has_errors or any(math.isfinite(e) for e in errors)
        axes.bar(
            positions + (index - (n_models - 1) / 2) * width,
            heights,
            width * 0.92,
            yerr=finite if has_errors else None,
            capsize=2.5,
            error_kw={"elinewidth": 1, "ecolor": TEXT},
            color=color(index),
            label=plain(model),
        )
    axes.set_xticks(positions, [_label(column) for column in metrics])
    axes.set_ylabel("Score (mean over test users)")
    axes.set_ylim(bottom=0)
    axes.grid(axis="x", visible=False)
    axes.set_title(f"Ranking metrics at K = {k}")
    axes.legend(ncols=min(n_models, 4), loc="upper left")
    _, top = axes.get_ylim()
    axes.set_ylim(0, top * 1.12)
    alt = f"Grouped bar chart of ranking metrics at K = {k}. " + "; ".join(
        f"{model}: "
        + ", ".join(
            f"{_label(column)} {h.format_metric(_value(table, index, column))}"
            for column in metrics
        )
        for index, model in enumerate(columns.models)
    )
    rows: list[list[h.Cell]] = [
        [model, *[_cell(table, index, column, best=False) for column in metrics]]
        for index, model in enumerate(columns.models)
    ]
    section.add(
        h.figure(writer.render(figure, "accuracy", f"Ranking metrics at K = {k}", alt)),
        h.table(["Model", *[_label(c) for c in metrics]], rows, caption=f"Metrics at K = {k}"),
    )
    if not has_errors:
        section.add(
            h.note("No standard errors in this table: run evaluate_with_details to get error bars.")
        )


def _curves(page: h.Page, curves: pd.DataFrame | None, writer: ChartWriter) -> None:
    section = page.section(
        "curves",
        "Metrics as K grows",
        "Each metric for list lengths K = 1 to the largest K evaluated; the band around a line "
        "is the 95% interval.",
    )
    if curves is None or curves.empty:
        section.add(h.note("No curves given: evaluate_with_details computes them."))
        return
    needed = {"model", "metric", "k", "value"}
    if not needed <= set(curves.columns):
        raise ValueError(f"curves need the columns {sorted(needed)}, got {list(curves.columns)}")
    present = set(curves["metric"])
    metrics = [name for name in _CURVE_ORDER if name in present]
    metrics += sorted(str(name) for name in present - set(_CURVE_ORDER))
    models = list(dict.fromkeys(str(model) for model in curves["model"]))
    n_columns = 3 if len(metrics) > 4 else 2 if len(metrics) > 1 else 1
    n_rows = math.ceil(len(metrics) / n_columns)
    figure = new_figure(0.6 + 2.5 * n_rows)
    for position, metric in enumerate(metrics, start=1):
        axes = add_axes(figure, n_rows, n_columns, position)
        for index, model in enumerate(models):
            chosen = curves[(curves["model"] == model) & (curves["metric"] == metric)].sort_values(
                "k"
            )
            ks = chosen["k"].to_numpy(dtype=np.float64)
            values = chosen["value"].to_numpy(dtype=np.float64)
            axes.plot(ks, values, color=color(index), label=plain(model), linewidth=1.8)
            if "se" in chosen.columns:
                band = Z_95 * chosen["se"].to_numpy(dtype=np.float64)
                if np.isfinite(band).any():
                    axes.fill_between(
                        ks,
                        values - band,
                        values + band,
                        color=color(index),
                        alpha=0.15,
                        linewidth=0,
                    )
        axes.set_title(_METRIC_NAMES.get(metric, metric), fontsize=11)
        axes.set_xlabel("K")
        axes.set_ylim(bottom=0)
        axes.set_xlim(left=1)
    handles, labels = figure.axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside upper center", ncols=min(len(models), 5))
    marks = sorted({k for k in (1, 5, 10, 20, int(curves["k"].max())) if k <= curves["k"].max()})
    lookup = {
        (str(model), str(metric), int(k)): float(value)
        for model, metric, k, value in zip(
            curves["model"].tolist(),
            curves["metric"].tolist(),
            curves["k"].tolist(),
            curves["value"].tolist(),
            strict=True,
        )
    }
    rows: list[list[h.Cell]] = [
        [
            model,
            str(k),
            *[h.format_metric(lookup.get((model, name, k), math.nan)) for name in metrics],
        ]
        for model in models
        for k in marks
    ]
    max_k = int(curves["k"].max())
    last = curves[curves["k"] == max_k]
    alt = f"Line charts of {', '.join(metrics)} for K = 1 to {max_k}. At K = {max_k}: " + "; ".join(
        f"{model} {metric} {h.format_metric(float(value))}"
        for model, metric, value in zip(
            last["model"].tolist(), last["metric"].tolist(), last["value"].tolist(), strict=True
        )
        if metric in ("ndcg", "recall")
    )
    section.add(
        h.figure(writer.render(figure, "curves", "Metrics as K grows", alt)),
        h.table(
            ["Model", "K", *[_METRIC_NAMES.get(name, name) for name in metrics]],
            rows,
            caption="Values at selected K",
            text_columns=2,
        ),
    )


def _tradeoffs(page: h.Page, table: pd.DataFrame, columns: _Columns, writer: ChartWriter) -> None:
    section = page.section(
        "tradeoffs",
        "Accuracy against coverage and novelty",
        "Accurate models often recommend the same popular items to everyone. Up and to the "
        "right is better on both axes.",
    )
    k = columns.beyond_k
    accuracy = f"ndcg@{k}" if k is not None and f"ndcg@{k}" in table.columns else None
    if k is None or accuracy is None or f"coverage@{k}" not in table.columns:
        section.add(h.note("This table has no beyond-accuracy metrics (coverage, novelty)."))
        return
    axes_columns = [c for c in (f"coverage@{k}", f"novelty@{k}") if c in table.columns]
    figure = new_figure(3.9)
    for position, x_column in enumerate(axes_columns, start=1):
        axes = add_axes(figure, 1, len(axes_columns), position)
        scale = 100.0 if x_column.startswith("coverage") else 1.0
        for index, model in enumerate(columns.models):
            x_value = _value(table, index, x_column) * scale
            y_value = _value(table, index, accuracy)
            axes.scatter([x_value], [y_value], s=60, color=color(index), zorder=3)
            axes.annotate(
                plain(model),
                (x_value, y_value),
                xytext=(6, 4),
                textcoords="offset points",
                fontsize=9,
            )
        axes.margins(0.2)
        axes.set_xlabel(f"{_label(x_column)}{' (%)' if scale == 100 else ' (bits)'}")
        axes.set_ylabel(_label(accuracy))
        axes.set_title(f"{_label(accuracy)} vs {_METRIC_NAMES[x_column.split('@')[0]].lower()}")
    shown = [accuracy, *axes_columns]
    if f"diversity@{k}" in table.columns:
        shown.append(f"diversity@{k}")
    alt = "Scatter plots of accuracy against coverage and novelty. " + "; ".join(
        f"{model}: "
        + ", ".join(f"{_label(c)} {h.format_metric(_value(table, index, c))}" for c in shown)
        for index, model in enumerate(columns.models)
    )
    rows: list[list[h.Cell]] = [
        [model, *[h.format_metric(_value(table, index, c)) for c in shown]]
        for index, model in enumerate(columns.models)
    ]
    section.add(
        h.figure(writer.render(figure, "tradeoffs", "Accuracy against coverage and novelty", alt)),
        h.table(["Model", *[_label(c) for c in shown]], rows, caption="Accuracy and beyond"),
    )


def _popularity(page: h.Page, table: pd.DataFrame, columns: _Columns, writer: ChartWriter) -> None:
    section = page.section(
        "popularity",
        "Popularity bias",
        "Average popularity (number of training users) of the recommended items, against the "
        "data's own averages: a model far above what users actually consume amplifies hits.",
    )
    k = columns.beyond_k
    column = f"popularity@{k}"
    if k is None or column not in table.columns:
        section.add(h.note("This table has no popularity column."))
        return
    values = [_value(table, index, column) for index in range(len(columns.models))]
    data_average = _value(table, 0, "data_popularity")
    catalogue_average = _value(table, 0, "catalogue_popularity")
    figure = new_figure(1.4 + 0.45 * len(values))
    axes = add_axes(figure)
    positions = np.arange(len(values))
    axes.barh(positions, values, color=[color(i) for i in range(len(values))], height=0.6)
    axes.set_yticks(positions, [plain(model) for model in columns.models])
    axes.invert_yaxis()
    axes.grid(axis="y", visible=False)
    if math.isfinite(data_average):
        axes.axvline(
            data_average, color=TEXT, linestyle="--", linewidth=1.3, label="users' own items"
        )
    if math.isfinite(catalogue_average):
        axes.axvline(
            catalogue_average, color=MUTED, linestyle=":", linewidth=1.6, label="catalogue"
        )
    if math.isfinite(data_average) or math.isfinite(catalogue_average):
        figure.legend(loc="outside right upper", title="Average of")
    finite = [v for v in (*values, data_average, catalogue_average) if math.isfinite(v)]
    axes.set_xlim(0, max(finite, default=1.0) * 1.18)
    label_bars(axes, values, [h.format_number(v) for v in values], horizontal=True)
    axes.set_xlabel(f"Average popularity of the top {k} (training users per item)")
    axes.set_title(f"Average recommendation popularity at K = {k}")
    alt = f"Bar chart of average recommendation popularity at K = {k}: " + "; ".join(
        f"{model} {h.format_number(v)}" for model, v in zip(columns.models, values, strict=True)
    )
    if math.isfinite(data_average):
        alt += f". Users' own items average {h.format_number(data_average)}"
    rows: list[list[h.Cell]] = [
        [
            model,
            h.format_number(value),
            f"{value / data_average:.2f}\u00d7"
            if math.isfinite(data_average) and data_average
            else h.MISSING,
        ]
        for model, value in zip(columns.models, values, strict=True)
    ]
    if math.isfinite(data_average):
        rows.append(["users' own training items", h.format_number(data_average), "1.00\u00d7"])
    if math.isfinite(catalogue_average):
        rows.append(
            [
                "catalogue (all items)",
                h.format_number(catalogue_average),
                f"{catalogue_average / data_average:.2f}\u00d7"
                if math.isfinite(data_average) and data_average
                else h.MISSING,
            ]
        )
    section.add(
        h.figure(writer.render(figure, "popularity", "Average recommendation popularity", alt)),
        h.table(
            ["Model", f"Avg. popularity@{k}", "Ratio to users' own items"],
            rows,
            caption="Popularity of recommended items",
        ),
    )


def _timing(page: h.Page, table: pd.DataFrame, columns: _Columns, writer: ChartWriter) -> None:
    section = page.section(
        "timing",
        "Training and prediction time",
        "Wall-clock seconds on the machine that ran the evaluation: training on the training "
        "part, and ranking the full catalogue for every test user.",
    )
    shown = [c for c in ("fit_s", "recommend_s") if c in table.columns]
    if not shown:
        section.add(h.note("This table has no timings."))
        return
    titles = {"fit_s": "Training", "recommend_s": "Recommending for all test users"}
    figure = new_figure(1.5 + 0.45 * len(columns.models))
    indices = list(range(len(columns.models)))
    for position, column in enumerate(shown, start=1):
        axes = add_axes(figure, 1, len(shown), position)
        values = [max(_value(table, index, column), 0.0) for index in indices]
        axes.barh(indices, values, color=[color(i) for i in indices], height=0.6)
        axes.set_yticks(
            indices, [plain(model) for model in columns.models] if position == 1 else []
        )
        axes.invert_yaxis()
        axes.grid(axis="y", visible=False)
        positive = [v for v in values if v > 0]
        if positive and max(positive) / min(positive) > 100:
            axes.set_xscale("log")
            plain_log_axis(axes, "x")
            axes.set_xlim(min(positive) / 2, max(positive) * 6)
            axes.set_xlabel("Seconds (log scale)")
        else:
            axes.set_xlim(0, max(values, default=1.0) * 1.3 or 1.0)
            axes.set_xlabel("Seconds")
        label_bars(axes, values, [h.format_seconds(v) for v in values], horizontal=True)
        axes.set_title(titles[column], fontsize=11)
    alt = "Bar charts of time per model. " + "; ".join(
        f"{model}: "
        + ", ".join(
            f"{titles[c].lower()} {h.format_seconds(_value(table, index, c))}" for c in shown
        )
        for index, model in enumerate(columns.models)
    )
    users = _value(table, 0, "users")
    header = ["Model", *[titles[c] for c in shown]]
    if "recommend_s" in shown and math.isfinite(users) and users > 0:
        header.append("Per 1,000 users")
    rows: list[list[h.Cell]] = []
    for index, model in enumerate(columns.models):
        cells: list[h.Cell] = [model, *[h.format_seconds(_value(table, index, c)) for c in shown]]
        if len(header) > len(shown) + 1:
            cells.append(h.format_seconds(_value(table, index, "recommend_s") / users * 1000))
        rows.append(cells)
    section.add(
        h.figure(writer.render(figure, "timing", "Training and prediction time", alt)),
        h.table(header, rows, caption="Time per model"),
    )
