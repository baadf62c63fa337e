"""Small server-rendered SVG charts: no chart library, no JavaScript, no external request.

Each function is pure: data in, an SVG string (``markupsafe.Markup``) out. Every chart is
``role="img"`` with a ``<title>`` and ``<desc>`` (WAI-ARIA graphics: the accessible name and
a summary), and the pages put the same numbers in a table beside it for screen readers and
for anyone who wants the exact values. Colours come from CSS classes (the page's Content
Security Policy forbids inline ``style``), so the charts follow the stylesheet's contrast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 640
HEIGHT = 220
_LEFT = 52
_RIGHT = 12
_TOP = 12
_BOTTOM = 34
_MAX_X_LABELS = 8


@dataclass(frozen=True, slots=True)
class Series:
    """One line of a line chart: a CSS class and one value (or a gap) per x label."""

    name: str
    css_class: str
    values: Sequence[float | None]


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 × 10^k that is ≥ ``value`` (1 for empty data)."""
    if not math.isfinite(value) or value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        candidate = step * 10.0**exponent
        if candidate >= value * (1 - 1e-9):
            return candidate
    return 10.0 ** (exponent + 1)


def _number(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def _frame(title: str, description: str, body: list[str], css_class: str) -> Markup:
    return Markup(
        f'<svg class="chart {escape(css_class)}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'preserveAspectRatio="xMidYMid meet" focusable="false">'
        f"<title>{escape(title)}</title><desc>{escape(description)}</desc>"
        + "".join(body)
        + "</svg>"
    )


def _axes(top: float, unit: str, labels: Sequence[str], x_of: list[float]) -> list[str]:
    """Horizontal grid lines with y labels, and a thinned row of x labels."""
    parts: list[str] = []
    plot_h = HEIGHT - _TOP - _BOTTOM
    for i in range(5):
        value = top * i / 4
        y = _TOP + plot_h - plot_h * i / 4
        parts.append(
            f'<line class="grid" x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(_number(value))}{escape(unit) if i == 4 else ''}</text>"
        )
    every = max(1, math.ceil(len(labels) / _MAX_X_LABELS))
    for i, label in enumerate(labels):
        if i % every == 0 or i == len(labels) - 1 and len(labels) <= _MAX_X_LABELS:
            parts.append(
                f'<text class="axis" x="{x_of[i]:.1f}" y="{HEIGHT - 12}" text-anchor="middle">'
                f"{escape(label)}</text>"
            )
    return parts


def line_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    unit: str = "",
    bridge_gaps: bool = False,
) -> Markup:
    """Lines over shared x labels; ``None`` values leave a gap (or are bridged over)."""
    values = [v for s in series for v in s.values if v is not None]
    top = nice_ceiling(max(values, default=0.0))
    plot_w = WIDTH - _LEFT - _RIGHT
    plot_h = HEIGHT - _TOP - _BOTTOM
    count = max(len(labels), 1)
    x_of = [_LEFT + (plot_w * (i + 0.5) / count) for i in range(count)]
    parts = _axes(top, unit, labels, x_of)
    for line in series:
        segment: list[str] = []
        runs: list[list[str]] = []
        for i, value in enumerate(line.values[:count]):
            if value is None:
                if segment and not bridge_gaps:
                    runs.append(segment)
                    segment = []
                continue
            y = _TOP + plot_h - plot_h * (value / top)
            segment.append(f"{x_of[i]:.1f},{y:.1f}")
        if segment:
            runs.append(segment)
        for run in runs:
            if len(run) == 1:
                cx, cy = run[0].split(",")
                parts.append(
                    f'<circle class="{escape(line.css_class)}" cx="{cx}" cy="{cy}" r="3"/>'
                )
            else:
                parts.append(
                    f'<polyline class="{escape(line.css_class)}" fill="none" '
                    f'points="{" ".join(run)}"/>'
                )
    names = ", ".join(s.name for s in series)
    summary = f"{names} over {len(labels)} points; the highest value is {_number(max(values, default=0.0))}{unit}."
    return _frame(title, summary, parts, "line")


def bar_chart(
    title: str,
    labels: Sequence[str],
    values: Sequence[float],
    *,
    unit: str = "",
    css_class: str = "bar",
) -> Markup:
    """One bar per label, from zero."""
    top = nice_ceiling(max(values, default=0.0))
    plot_w = WIDTH - _LEFT - _RIGHT
    plot_h = HEIGHT - _TOP - _BOTTOM
    count = max(len(labels), 1)
    slot = plot_w / count
    x_of = [_LEFT + slot * (i + 0.5) for i in range(count)]
    parts = _axes(top, unit, labels, x_of)
    bar_w = max(slot * 0.7, 1.0)
    for i, value in enumerate(values[:count]):
        h = plot_h * (max(value, 0.0) / top)
        parts.append(
            f'<rect class="{escape(css_class)}" x="{x_of[i] - bar_w / 2:.1f}" '
            f'y="{_TOP + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}">'
            f"<title>{escape(labels[i])}: {escape(_number(value))}{escape(unit)}</title></rect>"
        )
    summary = (
        f"{len(values)} bars; the highest is {_number(max(values, default=0.0))}{unit}, "
        f"the total {_number(sum(values))}{unit}."
    )
    return _frame(title, summary, parts, "bars")


def breakdown_bar(title: str, items: Sequence[tuple[str, int]]) -> Markup:
    """One horizontal bar split by share (e.g. blame: caller, ai_agent, carrier, system)."""
    total = sum(count for _, count in items)
    height = 36
    parts: list[str] = []
    x = 0.0
    for index, (name, count) in enumerate(items):
        if count <= 0 or total == 0:
            continue
        w = WIDTH * count / total
        parts.append(
            f'<rect class="share share-{index % 6}" x="{x:.1f}" y="0" width="{w:.1f}" '
            f'height="{height}"><title>{escape(name)}: {count} '
            f"({100 * count / total:.0f}%)</title></rect>"
        )
        x += w
    if total == 0:
        parts.append(f'<rect class="grid-fill" x="0" y="0" width="{WIDTH}" height="{height}"/>')
    summary = ", ".join(f"{name} {count}" for name, count in items) or "no data"
    return Markup(
        f'<svg class="chart breakdown" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'preserveAspectRatio="none" focusable="false"><title>{escape(title)}</title>'
        f"<desc>{escape(summary)}</desc>" + "".join(parts) + "</svg>"
    )
