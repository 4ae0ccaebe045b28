"""Tiny inline-SVG charts for the self-contained HTML report.

Written here rather than pulling in a plotting library: the report must be one
file with no external assets, the charts are simple (lines, steps, a presence
timeline), and a few dozen lines of SVG keep candiag's dependencies small.
Long series are reduced to at most ``MAX_POINTS`` per line (min/max kept per
bucket so spikes stay visible).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from itertools import pairwise

import numpy as np

MAX_POINTS = 800
PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
W, H = 900, 240
LEFT, RIGHT, TOP, BOTTOM = 60, 150, 12, 28


def _reduce(t: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep at most MAX_POINTS points, preserving each bucket's min and max.

    A bucket with no finite value (a gap: the signal was absent) keeps one NaN point, so
    the gap still breaks the line.
    """
    if len(t) <= MAX_POINTS:
        return t, y
    buckets = np.array_split(np.arange(len(t)), MAX_POINTS // 2)
    idx: list[int] = []
    for b in buckets:
        seg = y[b]
        finite = np.isfinite(seg)
        if not finite.any():
            idx.append(int(b[0]))
            continue
        lo = int(b[np.nanargmin(np.where(finite, seg, np.nan))])
        hi = int(b[np.nanargmax(np.where(finite, seg, np.nan))])
        idx.extend(sorted({lo, hi}))
    sel = np.array(idx)
    return t[sel], y[sel]


def _segments(x: np.ndarray, y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Runs of finite points without a time gap: a gap in the data is a gap in the line.

    A gap is a NaN value or a step in time over five times the typical (median) step.
    """
    ok = np.isfinite(y)
    if len(x) > 2:
        steps = np.diff(x)
        typical = float(np.median(steps)) if steps.size else 0.0
        jump = np.concatenate([[False], steps > 5 * max(typical, 1e-9)])
    else:
        jump = np.zeros(len(x), np.bool_)
    # A new segment starts after a NaN or at a time jump.
    breaks = ~ok | jump
    seg_id = np.cumsum(breaks)
    out = []
    for sid in np.unique(seg_id[ok]).tolist():
        sel = ok & (seg_id == sid)
        out.append((x[sel], y[sel]))
    return out


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000 or abs(v) < 0.01:
        return f"{v:.3g}"
    return f"{v:.2f}".rstrip("0").rstrip(".")


def line_chart(
    t: Sequence[float],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    unit: str = "",
    y_min: float | None = None,
    t0: float | None = None,
) -> str:
    """A multi-line chart over time (seconds from the capture start on the x axis)."""
    tt = np.asarray(t, np.float64)
    if len(tt) == 0 or not series:
        return f'<p class="empty">{escape(title)}: no data.</p>'
    origin = float(tt[0]) if t0 is None else t0
    xs = tt - origin
    values = [np.asarray(v, np.float64) for v in series.values()]
    finite = np.concatenate([v[np.isfinite(v)] for v in values] or [np.zeros(1)])
    if not finite.size:
        return f'<p class="empty">{escape(title)}: no value in the capture.</p>'
    lo = float(finite.min()) if y_min is None else min(y_min, float(finite.min(initial=y_min)))
    hi = float(finite.max()) if len(finite) else 1.0
    if hi <= lo:
        hi = lo + 1.0
    x_max = float(xs[-1]) if xs[-1] > 0 else 1.0

    def px(x: np.ndarray) -> np.ndarray:
        return LEFT + x / x_max * (W - LEFT - RIGHT)

    def py(y: np.ndarray) -> np.ndarray:
        return TOP + (1 - (y - lo) / (hi - lo)) * (H - TOP - BOTTOM)

    parts = [f"<h3>{escape(title)}</h3>", _frame(title, lo, hi, x_max, unit)]
    for i, (name, v) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        rx, ry = _reduce(xs, np.asarray(v, np.float64))
        for sx, sy in _segments(rx, ry):
            pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px(sx), py(sy), strict=True))
            parts.append(
                f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}"/>'
            )
        parts.append(
            f'<text x="{W - RIGHT + 8}" y="{TOP + 14 + 16 * i}" fill="{color}" '
            f'font-size="12">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _frame(title: str, lo: float, hi: float, x_max: float, unit: str) -> str:
    plot_h = H - TOP - BOTTOM
    out = [
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{plot_h}" '
        'fill="#fafafa" stroke="#ccc"/>',
    ]
    for frac in (0.0, 0.5, 1.0):
        y = TOP + (1 - frac) * plot_h
        out.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
            f"{_fmt(lo + frac * (hi - lo))}{escape(unit)}</text>"
        )
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = LEFT + frac * (W - LEFT - RIGHT)
        out.append(
            f'<text x="{x:.1f}" y="{H - 8}" text-anchor="middle" font-size="11">'
            f"{_fmt(frac * x_max)} s</text>"
        )
    return "".join(out)


def presence_timeline(
    t: Sequence[float], rows: Mapping[str, Sequence[float]], *, title: str
) -> str:
    """One row per node; a bar segment for every second the node transmitted."""
    tt = np.asarray(t, np.float64)
    if len(tt) == 0 or not rows:
        return f'<p class="empty">{escape(title)}: no data.</p>'
    row_h = 16
    left = 130  # room for "power module 12"
    height = TOP + BOTTOM + row_h * len(rows)
    x_max = float(tt[-1] - tt[0]) + 1.0
    scale = (W - left - RIGHT) / x_max
    out = [
        f"<h3>{escape(title)}</h3>",
        f'<svg class="chart" viewBox="0 0 {W} {height}" role="img" aria-label="{escape(title)}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (name, counts) in enumerate(rows.items()):
        y = TOP + i * row_h
        out.append(
            f'<text x="{left - 6}" y="{y + 12}" text-anchor="end" font-size="11">'
            f"{escape(name)}</text>"
        )
        out.append(
            f'<rect x="{left}" y="{y + 2}" width="{W - left - RIGHT}" height="{row_h - 4}" '
            'fill="#f3d6d6"/>'
        )
        present = np.asarray(counts, np.float64) > 0
        # Seconds missing from the axis (the whole bus silent) break a run too.
        contiguous = np.concatenate([[True], np.diff(tt) <= 1.0])
        for start, stop in _runs(present, contiguous):
            x = left + (tt[start] - tt[0]) * scale
            w = max(1.0, (tt[stop - 1] - tt[start] + 1.0) * scale)
            out.append(
                f'<rect x="{x:.1f}" y="{y + 2}" width="{w:.1f}" height="{row_h - 4}" '
                'fill="#2ca02c"/>'
            )
    out.append(
        f'<text x="{left}" y="{height - 8}" font-size="11">green: transmitting, '
        "red: silent (per second)</text></svg>"
    )
    return "".join(out)


def _runs(mask: np.ndarray, contiguous: np.ndarray | None = None) -> list[tuple[int, int]]:
    """[start, stop) index runs where ``mask`` holds; ``contiguous[i]`` False starts a new run."""
    if not mask.any():
        return []
    padded = np.concatenate(([False], mask, [False]))
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    runs = [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]
    if contiguous is None:
        return runs
    out: list[tuple[int, int]] = []
    for a, b in runs:
        cuts = [a, *(np.flatnonzero(~contiguous[a + 1 : b]) + a + 1).tolist(), b]
        out.extend(pairwise(cuts))
    return out
