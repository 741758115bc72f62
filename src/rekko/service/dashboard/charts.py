"""Line charts as inline SVG, drawn on the server: no script, no library, works offline."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from rekko.service.dashboard.html import text

#: Colours of the series, in order (distinct for common kinds of colour blindness).
COLOURS = ("#2d5be3", "#e8710a", "#1e8e3e", "#a142f4", "#d93025", "#12a4af", "#9e6a03")
WIDTH, HEIGHT = 720, 200
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 10, 28


def line_chart(
    series: Mapping[str, Sequence[float | None]],
    x_labels: Sequence[str],
    *,
    title: str,
    y_format: Callable[[float], str] = lambda value: f"{value:,.0f}",
    css_id: str = "",
) -> str:
    """One line per series over the same x positions (``None``: no point there). Each point
    carries a tooltip (``<title>``) with its series, x label and value."""
    n = len(x_labels)
    values = [v for points in series.values() for v in points if v is not None]
    top = max(values, default=0.0) or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x_of(index: int) -> float:
        return LEFT + (plot_w * index / (n - 1) if n > 1 else plot_w / 2)

    def y_of(value: float) -> float:
        return TOP + plot_h * (1 - value / top)

    parts = [
        f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" '
        f'y2="{TOP + plot_h}"/>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        y = y_of(top * fraction)
        parts.append(
            f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{text(y_format(top * fraction))}</text>"
        )
    if n:
        ticks = sorted({0, n // 2, n - 1})
        for index in ticks:
            anchor = "start" if index == 0 else "end" if index == n - 1 else "middle"
            parts.append(
                f'<text class="tick" x="{x_of(index):.1f}" y="{HEIGHT - 8}" '
                f'text-anchor="{anchor}">{text(x_labels[index])}</text>'
            )
    legend = []
    for number, (name, points) in enumerate(series.items()):
        colour = COLOURS[number % len(COLOURS)]
        segments: list[list[str]] = [[]]
        dots = []
        for index, value in enumerate(points):
            if value is None:
                segments.append([])
                continue
            x, y = x_of(index), y_of(value)
            segments[-1].append(f"{x:.1f},{y:.1f}")
            dots.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}">'
                f"<title>{text(name)} · {text(x_labels[index])}: {text(y_format(value))}</title>"
                "</circle>"
            )
        for segment in segments:
            if len(segment) > 1:
                parts.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                    f'points="{" ".join(segment)}"/>'
                )
        parts.extend(dots)
        legend.append(f'<span class="key"><i style="background:{colour}"></i>{text(name)}</span>')
    ident = f' id="{text(css_id)}"' if css_id else ""
    svg = (
        f'<svg{ident} class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{text(title)}" preserveAspectRatio="xMidYMid meet">'
        f"<title>{text(title)}</title>{''.join(parts)}</svg>"
    )
    return f'<figure class="chart"><figcaption>{text(title)}</figcaption>{svg}' + (
        f'<div class="legend">{"".join(legend)}</div></figure>'
    )
