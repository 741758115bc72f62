"""Small HTML helpers for the dashboard: escaping, the page layout, tables."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from string import Template
from urllib.parse import quote

_LAYOUT = Template(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title · rekko</title>
$refresh<link rel="icon" href="data:,">
<link rel="stylesheet" href="/dashboard/static/dashboard.css">
</head><body>
<header>
<a class="brand" href="/dashboard">rekko</a>
<a href="/dashboard">Overview</a>
<a href="/dashboard/try">Try it</a>
<a href="/dashboard/online">Online metrics</a>
<a href="/dashboard/jobs">Training jobs</a>
<a href="/dashboard/versions">Model versions</a>
<form action="/dashboard/users" method="get" role="search">
<input name="q" placeholder="Find a user id" aria-label="User id" value="$query">
<button type="submit">Search</button>
</form>
</header>
<main>
<h1>$title</h1>
$body
</main>
$scripts
</body></html>
"""
)


def text(value: object) -> str:
    """``value`` as escaped HTML text."""
    return escape(str(value), quote=True)


def page(
    title: str,
    body: str,
    *,
    query: str = "",
    script: str | None = None,
    refresh_s: int | None = None,
) -> str:
    """A whole page around ``body`` (already HTML); ``refresh_s`` reloads it that often."""
    scripts = f'<script src="/dashboard/static/{script}"></script>' if script else ""
    refresh = f'<meta http-equiv="refresh" content="{refresh_s}">\n' if refresh_s else ""
    return _LAYOUT.substitute(
        title=text(title), body=body, query=text(query), scripts=scripts, refresh=refresh
    )


def link(href: str, label: object) -> str:
    return f'<a href="{text(href)}">{text(label)}</a>'


def item_link(item_id: str) -> str:
    return link(f"/dashboard/items/{quote(item_id, safe='')}", item_id)


def user_link(user_id: str) -> str:
    return link(f"/dashboard/users/{quote(user_id, safe='')}", user_id)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, css_id: str = "") -> str:
    """A table; cells are HTML already (escape them with :func:`text`)."""
    head = "".join(f"<th>{text(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        body = f'<tr><td colspan="{len(headers)}" class="muted">nothing yet</td></tr>'
    ident = f' id="{text(css_id)}"' if css_id else ""
    table = f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="table">{table}</div>'


def card(title: str, body: str, *, wide: bool = False) -> str:
    """A titled box; ``wide`` spans the whole grid row."""
    css = "card wide" if wide else "card"
    return f'<section class="{css}"><h2>{text(title)}</h2>{body}</section>'


def number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.4f}"


_METRIC_WORDS = {
    "ndcg": "NDCG",
    "map": "MAP",
    "mrr": "MRR",
    "hit_rate": "Hit rate",
    "hitrate": "Hit rate",
    "precision": "Precision",
    "recall": "Recall",
    "coverage": "Coverage",
    "novelty": "Novelty",
    "rmse": "RMSE",
    "mae": "MAE",
    "auc": "AUC",
}
_METRIC_WORDS.update(map_truncated="MAP (truncated)", top_k_accuracy="Top-k accuracy")


def metric_label(name: str) -> str:
    """A readable label for a metric key: ``ndcg@10`` -> "NDCG@10", ``fit_s`` -> "Fit time
    (s)"; unknown keys get their underscores as spaces."""
    if name.endswith("_s"):
        return metric_label(name[:-2]) + " time (s)"
    base, at, cut = name.partition("@")
    words = _METRIC_WORDS.get(base.lower())
    if words is None:
        words = base.replace("_", " ")
        words = words[:1].upper() + words[1:]
    return f"{words}{at}{cut}"


def metrics_list(metrics: dict[str, float] | None) -> str:
    """Metrics as a short definition list (HTML)."""
    if not metrics:
        return '<span class="muted">-</span>'
    parts = "".join(
        f"<div><dt>{text(metric_label(name))}</dt><dd>{number(value)}</dd></div>"
        for name, value in sorted(metrics.items())
    )
    return f'<dl class="metrics">{parts}</dl>'
