"""Matplotlib charts for the reports: one style, one palette, inline SVG out.

Matplotlib is imported inside functions only, so ``import rekko.reports`` stays light. Figures
are plain :class:`matplotlib.figure.Figure` objects drawn with the Agg renderer (PNG) or the SVG
writer, never through ``pyplot``: a report leaves no open windows, no global figure registry
and no changed backend behind.
"""

from __future__ import annotations

import importlib.util
import io
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

ImageFormat = Literal["svg", "png"]

#: Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
PALETTE: tuple[str, ...] = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#6E6E6E",
    "#B8A200",
)
ACCENT = PALETTE[0]
MUTED = "#8A94A6"
TEXT = "#1F2933"
GRID = "#E4E7EB"
#: Diverging colour map for correlations (blue negative, red positive, white zero).
DIVERGING = "RdBu_r"

# Typed loosely: matplotlib types rc_context keys as a Literal of every rcParam name.
_STYLE: dict[Any, Any] = {
    # Text stays text in the SVG: smaller files, selectable and read by screen readers.
    "svg.fonttype": "none",
    "svg.hashsalt": "rekko",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "font.size": 11,
    "axes.titlesize": 13,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.titlepad": 10,
    "axes.labelsize": 11,
    "axes.labelcolor": TEXT,
    "axes.edgecolor": "#9AA5B1",
    "axes.linewidth": 0.8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": GRID,
    "grid.linewidth": 0.8,
    "xtick.color": TEXT,
    "ytick.color": TEXT,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.frameon": False,
    "legend.fontsize": 10,
    "text.color": TEXT,
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "savefig.facecolor": "white",
    "lines.linewidth": 2.0,
    "lines.markersize": 5,
    "date.converter": "concise",
}


def plain(text: object) -> str:
    """A data value (model name, item id) as chart text: a ``$`` must not start TeX maths."""
    return str(text).replace("$", r"\$")


def plain_log_axis(axes: Axes, axis: Literal["x", "y"] = "y") -> None:
    """Label a log axis with plain numbers (1, 10, 100) instead of powers of ten."""
    from matplotlib.ticker import FuncFormatter

    target = axes.yaxis if axis == "y" else axes.xaxis
    target.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.10g}"))


def color(index: int) -> str:
    """The palette colour for series ``index`` (cycles after eight)."""
    return PALETTE[index % len(PALETTE)]


def require_matplotlib() -> None:
    """Fail early, saying what to install, before any work is done for a report."""
    if importlib.util.find_spec("matplotlib") is None:
        raise ImportError("rekko reports need matplotlib: pip install 'rekko[reports]'")


@contextmanager
def chart_style() -> Iterator[None]:
    """Apply the report style to every figure drawn and saved inside the block."""
    import matplotlib

    with matplotlib.rc_context(_STYLE):
        yield


#: Every chart has this width (inches), so text has the same size on the page in all of them.
FIGURE_WIDTH = 8.5


def new_figure(height: float = 3.8) -> Figure:
    """A report-width figure with constrained layout (labels never clipped); height in inches."""
    from matplotlib.figure import Figure

    return Figure(figsize=(FIGURE_WIDTH, height), layout="constrained")


def add_axes(figure: Figure, rows: int = 1, columns: int = 1, index: int = 1) -> Axes:
    return figure.add_subplot(rows, columns, index)


def label_bars(
    axes: Axes, values: Sequence[float], texts: Sequence[str], *, horizontal: bool
) -> None:
    """Write each bar's value at its end, so the exact number is on the chart too."""
    for position, (value, text) in enumerate(zip(values, texts, strict=True)):
        if horizontal:
            axes.annotate(
                f" {text}",
                (value, position),
                va="center",
                ha="left",
                fontsize=9,
                color=TEXT,
                annotation_clip=False,
            )
        else:
            axes.annotate(
                text,
                (position, value),
                xytext=(0, 3),
                textcoords="offset points",
                va="bottom",
                ha="center",
                fontsize=9,
                color=TEXT,
                annotation_clip=False,
            )


_ID = re.compile(r'\bid="([^"]+)"')
_URL = re.compile(r"url\(#([^)]+)\)")
_HREF = re.compile(r'href="#([^"]+)"')
_ROOT = re.compile(r"<svg\b[^>]*>")
_VIEWBOX = re.compile(r'viewBox="([^"]+)"')
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def inline_svg(svg: str, prefix: str, title: str, description: str) -> str:
    """Matplotlib's SVG document as an element to paste into HTML.

    Drops the XML prolog, DOCTYPE, metadata and namespace declarations (the HTML parser knows
    SVG, and no URL is left in the page), prefixes every id so that several charts in one page
    never share one, and makes the chart scale with its container (viewBox, no fixed size).
    The title and description become the chart's accessible name and text alternative.
    """
    start = svg.index("<svg")
    body = _METADATA.sub("", svg[start:])
    root = _ROOT.search(body)
    if root is None:  # pragma: no cover - matplotlib always writes a root element
        raise ValueError("not an SVG document")
    viewbox = _VIEWBOX.search(root.group(0))
    view = viewbox.group(1) if viewbox else "0 0 576 302"
    rest = body[root.end() :]
    rest = _ID.sub(lambda match: f'id="{prefix}-{match.group(1)}"', rest)
    rest = _URL.sub(lambda match: f"url(#{prefix}-{match.group(1)})", rest)
    rest = _HREF.sub(lambda match: f'href="#{prefix}-{match.group(1)}"', rest)
    opening = (
        f'<svg class="chart" viewBox="{view}" role="img" '
        f'aria-labelledby="{prefix}-title {prefix}-desc">'
        f'<title id="{prefix}-title">{_escape(title)}</title>'
        f'<desc id="{prefix}-desc">{_escape(description)}</desc>'
    )
    return opening + rest.strip()


@dataclass
class ChartWriter:
    """Renders figures for one report: inline SVG for the page, files on request.

    With ``image_format``, each chart is also written to ``folder`` as
    ``NN-name.svg`` / ``NN-name.png`` (numbered in page order).
    """

    folder: Path | None = None
    image_format: ImageFormat | None = None
    written: list[Path] = field(default_factory=list)
    _count: int = 0

    def __post_init__(self) -> None:
        require_matplotlib()
        if self.image_format not in (None, "svg", "png"):
            raise ValueError(
                f"image_format must be 'svg', 'png' or None, got {self.image_format!r}"
            )
        if self.image_format is not None and self.folder is None:
            raise ValueError("image_format needs a folder to write the chart files to")

    def render(self, figure: Figure, name: str, title: str, description: str) -> str:
        """The figure as inline SVG markup; also saved as a file when a format was asked for."""
        self._count += 1
        prefix = f"c{self._count}"
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
        if self.image_format is not None and self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            target = self.folder / f"{self._count:02d}-{name}.{self.image_format}"
            if self.image_format == "svg":
                target.write_text(buffer.getvalue(), encoding="utf-8")
            else:
                figure.savefig(target, format="png", dpi=150, metadata={"Software": None})
            self.written.append(target)
        return inline_svg(buffer.getvalue(), prefix, title, description)
