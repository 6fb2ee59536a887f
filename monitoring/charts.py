"""Server-side SVG charts for the monitoring dashboard: no JavaScript, no CDN, readable at a glance.

Two shapes: values over time (stacked bars or lines) and labelled horizontal bars. Each chart
is drawn at a fixed size with its axis in the chart's unit; the caller titles it with unit and range.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

WIDTH, HEIGHT = 560, 220
LEFT, RIGHT, TOP, BOTTOM = 60, 12, 12, 30
PALETTE = {
    "SUCCESS": "#2e7d32",
    "FAILURE": "#c62828",
    "REVOKED": "#9e9e9e",
    "p50": "#1565c0",
    "p95": "#ef6c00",
    "failure rate": "#c62828",
}
FALLBACK_COLOURS = ("#1565c0", "#ef6c00", "#6a1b9a", "#00838f", "#5d4037", "#ad1457")


def colour(name: str, index: int) -> str:
    return PALETTE.get(name, FALLBACK_COLOURS[index % len(FALLBACK_COLOURS)])


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 × 10^k at or above `value` (an axis maximum)."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    return next(step * magnitude for step in (1, 2, 5, 10) if step * magnitude >= value)


def number(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _frame(body: list[str], label: str) -> SafeString:
    # Safe: every name, unit and label in the SVG goes through escape() where this module builds it.
    return mark_safe(  # noqa: S308
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{escape(label)}" font-family="sans-serif" font-size="11">{"".join(body)}</svg>'
    )


def _empty(label: str) -> SafeString:
    return _frame(
        [f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" fill="#757575">no data in this range</text>'],
        label,
    )


def _y_axis(top: float, unit: str) -> list[str]:
    plot_height = HEIGHT - TOP - BOTTOM
    parts = []
    for step in range(5):
        value = top * step / 4
        y = HEIGHT - BOTTOM - plot_height * step / 4
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e0e0e0"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#424242">{number(value)}</text>')
    parts.append(
        f'<text x="12" y="{TOP + plot_height / 2}" transform="rotate(-90 12 {TOP + plot_height / 2})" '
        f'text-anchor="middle" fill="#424242">{escape(unit)}</text>'
    )
    return parts


def _legend(names: list[str]) -> list[str]:
    parts, x = [], LEFT
    for index, name in enumerate(names):
        parts.append(f'<rect x="{x}" y="2" width="10" height="10" fill="{colour(name, index)}"/>')
        parts.append(f'<text x="{x + 14}" y="11" fill="#212121">{escape(name)}</text>')
        x += 24 + 7 * len(name)
    return parts


def time_chart(  # noqa: C901 (axes, bars or lines, legend: one drawing)
    times: list[datetime],
    series: Mapping[str, Sequence[float | None]],
    *,
    unit: str,
    label: str,
    stacked: bool,
    time_format: str,
) -> SafeString:
    """Values per time bucket: stacked bars (counts) or lines (rates, percentiles)."""
    if not times or not any(v for values in series.values() for v in values if v):
        return _empty(label)
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM - 12
    if stacked:
        peak = max(sum(values[i] or 0 for values in series.values()) for i in range(len(times)))
    else:
        peak = max(v for values in series.values() for v in values if v is not None)
    top = nice_ceiling(peak)
    slot = plot_width / len(times)
    body = _y_axis(top, unit) + _legend(list(series))

    def y_of(value: float) -> float:
        return HEIGHT - BOTTOM - plot_height * value / top

    if stacked:
        base = [0.0] * len(times)
        for index, (name, values) in enumerate(series.items()):
            for i, value in enumerate(values):
                if value:
                    y, bottom = y_of(base[i] + value), y_of(base[i])
                    body.append(
                        f'<rect x="{LEFT + i * slot + slot * 0.1:.1f}" y="{y:.1f}" width="{max(slot * 0.8, 1):.1f}" '
                        f'height="{bottom - y:.1f}" fill="{colour(name, index)}"><title>{escape(name)}: '
                        f"{number(value)} {escape(unit)}</title></rect>"
                    )
                    base[i] += value
    else:
        for index, (name, values) in enumerate(series.items()):
            points = [f"{LEFT + (i + 0.5) * slot:.1f},{y_of(v):.1f}" for i, v in enumerate(values) if v is not None]
            if points:
                body.append(
                    f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour(name, index)}" '
                    f'stroke-width="2"/>'
                )
    every = max(1, len(times) // 6)
    for i in range(0, len(times), every):
        body.append(
            f'<text x="{LEFT + (i + 0.5) * slot:.1f}" y="{HEIGHT - 10}" text-anchor="middle" fill="#424242">'
            f"{times[i].strftime(time_format)}</text>"
        )
    return _frame(body, label)


def bar_chart(rows: list[tuple[str, dict[str, float]]], *, unit: str, label: str) -> SafeString:
    """Labelled horizontal bars, one group per row (e.g. p50 and p95 of each task name)."""
    rows = rows[:10]
    if not rows:
        return _empty(label)
    names = list(dict.fromkeys(name for _, values in rows for name in values))
    top = nice_ceiling(max((v for _, values in rows for v in values.values()), default=0))
    left, plot_width = 170, WIDTH - 170 - 70
    row_height = (HEIGHT - 20) / len(rows)
    bar_height = min(14, (row_height - 4) / len(names))
    body = _legend(names) if len(names) > 1 else []
    for r, (row_label, values) in enumerate(rows):
        y0 = 18 + r * row_height
        short = row_label.rsplit(".", 1)[-1] if len(row_label) > 26 else row_label  # a task's own name
        short = short if len(short) <= 26 else short[:25] + "…"
        body.append(
            f'<text x="{left - 6}" y="{y0 + row_height / 2 + 4:.1f}" text-anchor="end" fill="#212121">'
            f"<title>{escape(row_label)}</title>{escape(short)}</text>"
        )
        for n, name in enumerate(names):
            value = values.get(name, 0) or 0
            width = plot_width * value / top
            y = y0 + (row_height - bar_height * len(names)) / 2 + n * bar_height
            body.append(
                f'<rect x="{left}" y="{y:.1f}" width="{max(width, 0.5):.1f}" height="{bar_height - 1:.1f}" '
                f'fill="{colour(name, n)}"/>'
                f'<text x="{left + width + 4:.1f}" y="{y + bar_height - 3:.1f}" fill="#212121">'
                f"{number(value)} {escape(unit)}</text>"
            )
    return _frame(body, label)
