"""Small server-side charts: horizontal bar charts and trend sparklines as inline SVG (no chart library, no
script)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

from markupsafe import Markup

ROW_H = 24
LABEL_W = 220
BAR_W = 420
VALUE_W = 110
SPARK_W = 160
SPARK_H = 36


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.2f}"


def bar_chart(data: Sequence[tuple[str, float]], title: str, fmt: Callable[[float], str] = _fmt,
              limit: int = 20, scale_max: float | None = None) -> Markup:
    """A horizontal bar chart of (label, value) pairs, largest first; at most `limit` bars.

    Bars are scaled to the largest value, or to `scale_max` when given (100 for percentages: 85.7% is then
    85.7% of the width, not a full bar). The SVG carries a <title> and a text value on each bar, so it reads
    without colour or a mouse."""
    items = sorted(((str(k), float(v)) for k, v in data), key=lambda kv: -kv[1])[:limit]
    if not items:
        return Markup('<p class="empty">No data to chart.</p>')
    top = max((v for _, v in items), default=0)
    if scale_max is not None:
        top = max(top, scale_max)
    top = top or 1
    width = LABEL_W + BAR_W + VALUE_W
    height = ROW_H * len(items) + 8
    parts = [f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(title)}</title>"]
    for i, (label, value) in enumerate(items):
        y = 4 + i * ROW_H
        w = max(1.0, BAR_W * max(value, 0) / top) if value > 0 else 0
        shown = label if len(label) <= 30 else label[:29] + "…"
        parts.append(f'<g class="bar"><title>{escape(label)}: {escape(fmt(value))}</title>'
                     f'<text x="{LABEL_W - 8}" y="{y + 16}" text-anchor="end">{escape(shown)}</text>'
                     f'<rect x="{LABEL_W}" y="{y + 3}" width="{w:.1f}" height="{ROW_H - 6}" rx="2"></rect>'
                     f'<text class="value" x="{LABEL_W + w + 6:.1f}" y="{y + 16}">{escape(fmt(value))}</text></g>')
    parts.append("</svg>")
    return Markup("".join(parts))


def sparkline(points: Sequence[tuple[str, float | None]], title: str, fmt: Callable[[float], str] = _fmt,
              scale_max: float | None = None) -> Markup:
    """A small trend line of (label, value) points, oldest first (None: no value at that point); each point
    carries its label and value as a <title>, and the SVG's own title names the first and last values."""
    known = [(label, v) for label, v in points if v is not None]
    if len(known) < 2:
        return Markup('<span class="spark-empty">not enough history yet</span>')
    values = [v for _, v in known]
    lo = min(0.0, min(values))
    hi = max(values) if scale_max is None else max(scale_max, max(values))
    span = (hi - lo) or 1.0
    step = (SPARK_W - 8) / (len(known) - 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return 4 + i * step, SPARK_H - 4 - (SPARK_H - 8) * (v - lo) / span

    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in
                    enumerate(xy(i, v) for i, v in enumerate(values)))
    summary = f"{title}: {fmt(values[0])} → {fmt(values[-1])} over {len(values)} points"
    parts = [f'<svg class="spark" role="img" aria-label="{escape(summary)}" viewBox="0 0 {SPARK_W} {SPARK_H}" '
             f'width="{SPARK_W}" height="{SPARK_H}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(summary)}</title>",
             f'<path d="{path}" fill="none" stroke="currentColor" stroke-width="1.5"></path>']
    for i, (label, v) in enumerate(known):
        x, y = xy(i, v)
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{2.5 if i == len(known) - 1 else 1.5}" '
                     f'fill="currentColor"><title>{escape(label)}: {escape(fmt(v))}</title></circle>')
    parts.append("</svg>")
    return Markup("".join(parts))
