"""Small server-side charts: horizontal bar charts as inline SVG (no chart library, no script)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

from markupsafe import Markup

ROW_H = 24
LABEL_W = 220
BAR_W = 420
VALUE_W = 110


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.2f}"


def bar_chart(data: Sequence[tuple[str, float]], title: str, fmt: Callable[[float], str] = _fmt,
              limit: int = 20) -> Markup:
    """A horizontal bar chart of (label, value) pairs, largest first; at most `limit` bars.

    The SVG carries a <title> and a text value on each bar, so it reads without colour or a mouse."""
    items = sorted(((str(k), float(v)) for k, v in data), key=lambda kv: -kv[1])[:limit]
    if not items:
        return Markup('<p class="empty">No data to chart.</p>')
    top = max((v for _, v in items), default=0) or 1
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
