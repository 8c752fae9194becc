"""The report's chart: every evaluation as a point and the best-so-far line, as inline SVG.

The y axis is logarithmic when every value is positive and they span two decades or more (a
loss that falls from 0.5 to 0.002 would otherwise put all later progress on the floor), linear
otherwise. Both axes are labelled and ticked; evaluations that produced no value are drawn as
crosses below the axis, coloured by status; a re-evaluation (recheck or noise seed) is a ring
joined to its variant's first point, so how much a value moved between seeds is visible.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass

W, H = 860, 360
LEFT, RIGHT, TOP, BOTTOM = 72, 16, 34, 58
COLORS = {"ok": "#2b7bb9", "crash": "#d62728", "timeout": "#ff7f0e", "oom": "#9467bd",
          "invalid": "#8c564b", "infra_error": "#7f7f7f", "pending": "#bbbbbb"}
BEST = "#2ca02c"
LOG_SPAN = 100.0
"""max / min at or above which a positive metric is drawn on a log axis."""


@dataclass(frozen=True)
class Point:
    idx: int
    """The variant's index (x)."""
    value: float | None
    """The evaluation's metric; None when it produced none (failed or pending)."""
    status: str
    again: bool
    """A re-evaluation (a recheck or a further noise seed), not the variant's first."""
    label: str
    """The hover text."""


def nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """Round tick values covering [lo, hi] on a linear axis (steps of 1, 2 or 5 × 10^k)."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, count - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks = []
    t = first
    while t <= hi + step * 1e-9:
        if t >= lo - step * 1e-9:
            ticks.append(round(t, 12))
        t += step
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """Powers of ten covering [lo, hi] (with 2 and 5 between them when there are few)."""
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    mults = (1, 2, 5) if last - first <= 3 else (1,)
    every = max(1, math.ceil((last - first) / 10))  # at most about ten labels
    return [m * 10.0 ** e for e in range(first, last + 1, every) for m in mults
            if lo <= m * 10.0 ** e <= hi]


def uses_log(values: list[float]) -> bool:
    return bool(values) and min(values) > 0 and max(values) / min(values) >= LOG_SPAN


def _y_scale(values: list[float]) -> tuple[Callable[[float], float], list[float], bool]:
    lo, hi = min(values), max(values)
    log = uses_log(values)
    if log:
        a, b = math.log10(lo), math.log10(hi)
        pad = (b - a) * 0.05
        a, b = a - pad, b + pad
        ticks = log_ticks(10 ** a, 10 ** b)
        return (lambda v: TOP + (H - TOP - BOTTOM) * (b - math.log10(v)) / (b - a)), ticks, True
    pad = (hi - lo) * 0.05 or abs(hi) * 0.05 or 1.0
    a, b = lo - pad, hi + pad
    ticks = nice_ticks(a, b)
    return (lambda v: TOP + (H - TOP - BOTTOM) * (b - v) / (b - a)), ticks, False


def chart_svg(points: list[Point], steps: list[tuple[int, float]], metric: str, goal: str,
              last_idx: int) -> str:
    """The chart, or a sentence when no evaluation has a value yet.

    Args:
        steps: (index, best value) wherever the best so far changed.
        last_idx: the highest variant index (where the best-so-far line ends).
    """
    values = [p.value for p in points if p.value is not None and math.isfinite(p.value)]
    if not values:
        return "<p>No evaluation has a value yet.</p>"
    y, yticks, log = _y_scale(values)
    n = max(1, last_idx)
    plot_w = W - LEFT - RIGHT

    def x(i: float) -> float:
        return LEFT + plot_w * i / n

    floor = H - BOTTOM + 14
    out = [f'<svg id="best-curve" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
           'xmlns="http://www.w3.org/2000/svg" font-family="system-ui,sans-serif" font-size="11">',
           f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{H - TOP - BOTTOM}" '
           'fill="white" stroke="#999"/>',
           f'<text id="chart-title" x="{W / 2}" y="18" text-anchor="middle" font-size="14" '
           f'font-weight="bold">{html.escape(metric)} ({html.escape(goal)}) — every evaluation '
           f'and the best so far{" (log scale)" if log else ""}</text>']
    for t in yticks:
        ty = y(t)
        out.append(f'<line class="ytick" x1="{LEFT - 4}" x2="{W - RIGHT}" y1="{ty:.1f}" '
                   f'y2="{ty:.1f}" stroke="#e4e4e4"/><text x="{LEFT - 6}" y="{ty + 4:.1f}" '
                   f'text-anchor="end">{t:.3g}</text>')
    for t in nice_ticks(0, n, 8):
        if t != int(t):
            continue
        tx = x(t)
        out.append(f'<line class="xtick" x1="{tx:.1f}" x2="{tx:.1f}" y1="{H - BOTTOM}" '
                   f'y2="{H - BOTTOM + 4}" stroke="#666"/><text x="{tx:.1f}" '
                   f'y="{H - BOTTOM + 28}" text-anchor="middle">{int(t)}</text>')
    out.append(f'<text id="x-label" x="{LEFT + plot_w / 2}" y="{H - 8}" text-anchor="middle">'
               "variant index (order proposed)</text>")
    out.append(f'<text id="y-label" transform="translate(14 {TOP + (H - TOP - BOTTOM) / 2}) '
               f'rotate(-90)" text-anchor="middle">{html.escape(metric)}</text>')
    firsts = {p.idx: p.value for p in points if not p.again and p.value is not None}
    for p in points:  # a recheck's ring joined to the first value of its variant
        if p.again and p.value is not None and firsts.get(p.idx) is not None:
            out.append(f'<line x1="{x(p.idx):.1f}" x2="{x(p.idx):.1f}" '
                       f'y1="{y(firsts[p.idx]):.1f}" y2="{y(p.value):.1f}" stroke="#888" '
                       'stroke-dasharray="2,2"/>')
    for p in points:
        color = COLORS.get(p.status, "#000")
        title = f"<title>{html.escape(p.label)}</title>"
        px = x(p.idx)
        if p.value is None or not math.isfinite(p.value):
            out.append(f'<path class="evaluation failed" d="M{px - 3:.1f},{floor - 3} l6,6 m0,-6 '
                       f'l-6,6" stroke="{color}" stroke-width="2">{title}</path>')
        elif p.again:
            out.append(f'<circle class="evaluation again" cx="{px:.1f}" cy="{y(p.value):.1f}" '
                       f'r="4.5" fill="none" stroke="{color}" stroke-width="1.5">{title}</circle>')
        else:
            out.append(f'<circle class="evaluation" cx="{px:.1f}" cy="{y(p.value):.1f}" r="3.5" '
                       f'fill="{color}" fill-opacity="0.75">{title}</circle>')
    if steps:
        pts, last = [], None
        for idx, val in steps:
            if last is not None:
                pts.append(f"{x(idx):.1f},{y(last):.1f}")
            pts.append(f"{x(idx):.1f},{y(val):.1f}")
            last = val
        pts.append(f"{x(n):.1f},{y(steps[-1][1]):.1f}")
        out.append(f'<polyline id="best-line" points="{" ".join(pts)}" fill="none" '
                   f'stroke="{BEST}" stroke-width="2.5"/>')
    out.append("</svg>")
    return "\n".join(out)


def legend_html() -> str:
    spans = "".join(f'<span style="color:{c}">● {s}</span>' for s, c in COLORS.items())
    return (f'<p class="legend">{spans}<span>○ re-evaluation</span><span>× no value '
            f'(drawn below the axis)</span><span style="color:{BEST}">— best so far</span></p>')
