"""Self-contained HTML pages: inline CSS, inline SVG charts, no scripts, no external fetches.

A :class:`Page` is a title, headline figures and numbered sections; it renders to one HTML
string with a table of contents. Text passed in is escaped unless wrapped in :class:`Markup`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import rekko


class Markup(str):
    """HTML that is already safe and must not be escaped again."""

    __slots__ = ()


Cell = str | int | float | Markup


#: Shown where a number is missing or undefined (an en dash).
MISSING = "\u2013"


def escape(text: object) -> str:
    return text if isinstance(text, Markup) else html.escape(str(text), quote=True)


# ----------------------------------------------------------------------------------- numbers


def format_int(value: float) -> str:
    """``9997`` -> ``"9,997"``."""
    return f"{round(value):,}"


def format_share(value: float, digits: int = 1) -> str:
    """A fraction as a percentage: ``0.0417`` -> ``"4.2%"`` (tiny shares keep two digits)."""
    if not math.isfinite(value):
        return MISSING
    percent = 100.0 * value
    if 0 < abs(percent) < 0.1:
        return f"{percent:.2g}%"
    return f"{percent:.{digits}f}%"


def format_metric(value: float) -> str:
    """How evaluation reports print a metric value (four decimals)."""
    return MISSING if not math.isfinite(value) else f"{value:.4f}"


def format_number(value: float) -> str:
    """A general number: integers with separators, others with three significant decimals."""
    if not math.isfinite(value):
        return MISSING
    if float(value).is_integer() and abs(value) < 1e15:
        return format_int(value)
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.01:
        return f"{value:.3f}"
    return f"{value:.3g}"


def format_seconds(value: float) -> str:
    if not math.isfinite(value):
        return MISSING
    if value >= 100:
        return f"{value:,.0f} s"
    if value >= 1:
        return f"{value:.2f} s"
    return f"{value * 1000:.1f} ms"


# ------------------------------------------------------------------------------- fragments


def table(
    header: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    *,
    caption: str | None = None,
    text_columns: int = 1,
    row_headers: bool = True,
) -> Markup:
    """A table; the first ``text_columns`` columns are left-aligned, the rest right-aligned.

    Numbers are not formatted here: pass the strings a reader should see.
    """
    parts = ['<div class="table-wrap"><table>']
    if caption:
        parts.append(f"<caption>{escape(caption)}</caption>")
    parts.append("<thead><tr>")
    for position, name in enumerate(header):
        align = "" if position < text_columns else ' class="num"'
        parts.append(f'<th scope="col"{align}>{escape(name)}</th>')
    parts.append("</tr></thead><tbody>")
    for row in rows:
        parts.append("<tr>")
        for position, cell in enumerate(row):
            text = cell if isinstance(cell, str) else format_number(float(cell))
            if position == 0 and row_headers:
                parts.append(f'<th scope="row">{escape(text)}</th>')
            elif position < text_columns:
                parts.append(f"<td>{escape(text)}</td>")
            else:
                parts.append(f'<td class="num">{escape(text)}</td>')
        parts.append("</tr>")
    parts.append("</tbody></table></div>")
    return Markup("".join(parts))


def figure(svg: str, caption: str | None = None) -> Markup:
    caption_html = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return Markup(f"<figure>{svg}{caption_html}</figure>")


def paragraph(text: str, *, css: str | None = None) -> Markup:
    attribute = f' class="{css}"' if css else ""
    return Markup(f"<p{attribute}>{escape(text)}</p>")


def note(text: str) -> Markup:
    """A visible aside, e.g. why a chart is missing for this data."""
    return Markup(f'<p class="note">{escape(text)}</p>')


def cards(items: Sequence[tuple[str, str]]) -> Markup:
    """Headline figures: large value, small label."""
    inner = "".join(
        f'<div class="card"><dt>{escape(label)}</dt><dd>{escape(value)}</dd></div>'
        for label, value in items
    )
    return Markup(f'<dl class="cards">{inner}</dl>')


def definition_list(items: Sequence[tuple[str, str]]) -> Markup:
    inner = "".join(f"<dt>{escape(term)}</dt><dd>{escape(text)}</dd>" for term, text in items)
    return Markup(f'<dl class="terms">{inner}</dl>')


# ------------------------------------------------------------------------------------ page


@dataclass
class Section:
    id: str
    title: str
    parts: list[Markup] = field(default_factory=list)

    def add(self, *parts: Markup) -> Section:
        self.parts.extend(parts)
        return self


@dataclass
class Page:
    title: str
    subtitle: str = ""
    headline: Sequence[tuple[str, str]] = ()
    sections: list[Section] = field(default_factory=list)

    def section(self, section_id: str, title: str, intro: str | None = None) -> Section:
        if any(existing.id == section_id for existing in self.sections):
            raise ValueError(f"duplicate section id {section_id!r}")
        section = Section(section_id, title)
        if intro:
            section.add(paragraph(intro, css="intro"))
        self.sections.append(section)
        return section

    def render(self) -> str:
        toc = "".join(
            f'<li><a href="#{escape(section.id)}">{escape(section.title)}</a></li>'
            for section in self.sections
        )
        body = "".join(
            f'<section id="{escape(section.id)}" aria-labelledby="{escape(section.id)}-h">'
            f'<h2 id="{escape(section.id)}-h">{escape(section.title)}</h2>'
            + "".join(section.parts)
            + "</section>"
            for section in self.sections
        )
        subtitle = f'<p class="subtitle">{escape(self.subtitle)}</p>' if self.subtitle else ""
        headline = cards(self.headline) if self.headline else ""
        return (
            "<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="generator" content="rekko {escape(rekko.__version__)}">'
            f"<title>{escape(self.title)}</title><style>{CSS}</style></head><body>"
            '<a class="skip" href="#main">Skip to content</a>'
            f'<header class="top"><div class="wrap"><h1>{escape(self.title)}</h1>{subtitle}'
            f"{headline}</div></header>"
            '<div class="wrap layout">'
            f'<nav class="toc" aria-label="Contents"><h2>Contents</h2><ol>{toc}</ol></nav>'
            f'<main id="main">{body}</main></div>'
            f'<footer class="wrap">Made with rekko {escape(rekko.__version__)}. '
            "Charts are inline SVG: this file works offline and can be printed.</footer>"
            "</body></html>\n"
        )

    def write(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.render(), encoding="utf-8")
        return path


CSS = """
:root{--text:#1f2933;--muted:#52606d;--line:#e4e7eb;--bg:#f5f7fa;--card:#fff;--accent:#0072b2;
--font:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"DejaVu Sans",sans-serif}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;font-family:var(--font);font-size:1rem;line-height:1.55;color:var(--text);
background:var(--bg)}
.wrap{max-width:1080px;margin:0 auto;padding:0 1.25rem}
.skip{position:absolute;left:-999px;top:0;background:#fff;padding:.5rem 1rem}
.skip:focus{left:1rem;z-index:10}
header.top{background:#fff;border-bottom:1px solid var(--line);padding:1.5rem 0 1.25rem}
h1{font-size:1.9rem;line-height:1.2;margin:0 0 .25rem}
h2{font-size:1.35rem;margin:0 0 .5rem}
.subtitle{color:var(--muted);margin:0 0 1rem}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(9.5rem,1fr));gap:.75rem;margin:0}
.card{background:var(--bg);border:1px solid var(--line);border-radius:.5rem;padding:.6rem .8rem}
.card dt{font-size:.8rem;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.card dd{margin:0;font-size:1.45rem;font-weight:650;font-variant-numeric:tabular-nums}
.layout{display:grid;grid-template-columns:13rem minmax(0,1fr);gap:1.5rem;padding-top:1.5rem}
.toc{position:sticky;top:1rem;align-self:start;font-size:.92rem}
.toc h2{font-size:.8rem;text-transform:uppercase;letter-spacing:.05em;color:var(--muted)}
.toc ol{margin:0;padding-left:1.2rem}
.toc li{margin:.2rem 0}
a{color:var(--accent)}
a:focus-visible{outline:3px solid #e69f00;outline-offset:2px}
section{background:var(--card);border:1px solid var(--line);border-radius:.75rem;
padding:1.25rem 1.5rem;margin:0 0 1.5rem;scroll-margin-top:1rem}
.intro{color:var(--muted);margin-top:0}
.note{background:#fff8e6;border-left:4px solid #e69f00;padding:.5rem .8rem;border-radius:.25rem}
figure{margin:1rem 0}
figcaption{color:var(--muted);font-size:.9rem;margin-top:.25rem}
svg.chart{display:block;width:100%;height:auto}
.table-wrap{overflow-x:auto;margin:.75rem 0}
table{border-collapse:collapse;font-size:.9rem;font-variant-numeric:tabular-nums;min-width:50%}
caption{text-align:left;font-weight:600;padding:.25rem 0;color:var(--text)}
th,td{padding:.3rem .7rem;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{border-bottom:2px solid #9aa5b1;font-weight:600}
tbody th{font-weight:500;white-space:nowrap}
.num{text-align:right;white-space:nowrap}
tbody tr:nth-child(even){background:#fafbfc}
.best{font-weight:700}
.se{color:var(--muted);font-size:.85em}
.terms{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;font-size:.92rem}
.terms dt{font-weight:600}.terms dd{margin:0}
footer{color:var(--muted);font-size:.85rem;padding:1rem 1.25rem 2rem}
@media (max-width:760px){.layout{grid-template-columns:minmax(0,1fr)}.toc{position:static}
section{padding:1rem}h1{font-size:1.5rem}}
@media print{body{background:#fff}.toc,.skip{display:none}.layout{display:block}
section{break-inside:avoid;border:0;padding:0}}
""".strip()
