"""Inline-SVG charts for the self-contained HTML report.

Written here rather than pulling in a plotting library: the report must be one file with
no external assets, the charts are simple (lines over time, a presence timeline), and a
few hundred lines of SVG keep candiag's dependencies small.

What a reader of a ticket needs from a chart, and how it is drawn:

* **Wall-clock time**: the x axis is a :class:`TimeAxis`: ticks on round UTC clock times
  (every 1 s .. 1 day, about six of them), each with the time since the capture start
  below it; a capture whose clock was never set (timestamps before 2000) is labelled in
  its own seconds instead, and says so.
* **Fixed scales where the quantity has one**: bus load is drawn 0-100 % with its warning
  threshold as a labelled line, so a flat 26 % does not fill the chart.
* **Overlapping series stay distinguishable**: each series has its own colour *and* dash
  pattern (dashed lines on top let the ones below show through), the legend shows both,
  and when all series lie within a few percent of each other the chart says so in words.
* **Hover values**: the plot is cut into at most :data:`HOVER_COLUMNS` columns, each an
  invisible rectangle whose ``<title>`` lists the time and every series' value there
  (browsers show it as a tooltip; it stays text in the file, nothing is scripted).

Long series are reduced to at most :data:`MAX_POINTS` points per line (each bucket's min
and max kept, so spikes stay visible).  All text from files (series and node names) is
escaped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from itertools import pairwise

import numpy as np
import numpy.typing as npt

from candiag.report.units import number

F64 = npt.NDArray[np.float64]
MAX_POINTS = 800
HOVER_COLUMNS = 120
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
# Dash patterns cycled with the colours: series i has PALETTE[i % 10] and DASHES[i % 4].
DASHES = ("", "7 4", "2 3", "10 3 2 3")
W, H = 900, 250
LEFT, RIGHT, TOP, BOTTOM = 64, 170, 12, 46
# Timestamps before 2000-01-01 are a clock that was never set, not wall-clock time.
PLAUSIBLE_EPOCH = 946_684_800.0
# Round tick steps in seconds: 1 s .. 1 day.
TICK_STEPS_S: tuple[int, ...] = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
TICK_STEPS_S += (7200, 10800, 21600, 43200, 86400)
MAX_TICKS = 7
# Series closer than this share of the y range everywhere are said to overlap.
OVERLAP_SHARE = 0.02


@dataclass(frozen=True)
class TimeAxis:
    """The x axis of every chart of one report: capture time from ``start`` to ``end``.

    ``start`` and ``end`` are capture timestamps (seconds); when they are Unix times
    (:data:`PLAUSIBLE_EPOCH` or later) ticks are UTC clock times, otherwise the capture's
    own seconds.
    """

    start: float
    end: float

    @property
    def wall_clock(self) -> bool:
        return self.start >= PLAUSIBLE_EPOCH

    @property
    def span(self) -> float:
        return max(self.end - self.start, 1.0)

    def x(self, ts: F64 | float, left: float = LEFT, right: float = W - RIGHT) -> F64:
        return np.asarray(
            left + (np.asarray(ts, np.float64) - self.start) / self.span * (right - left)
        )

    @property
    def step(self) -> float:
        """Seconds between ticks: the smallest round step giving at most MAX_TICKS ticks."""
        step = next((s for s in TICK_STEPS_S if self.span / s <= MAX_TICKS - 1), TICK_STEPS_S[-1])
        if self.span / step > MAX_TICKS - 1:  # longer than about a week: whole days
            step = math.ceil(self.span / (MAX_TICKS - 1) / 86400) * 86400
        return float(step)

    def ticks(self) -> list[float]:
        """Round clock times within the axis, at most :data:`MAX_TICKS` of them."""
        first = math.ceil(self.start / self.step) * self.step
        return [float(t) for t in np.arange(first, self.end + 1e-9, self.step)]

    def clock(self, ts: float) -> str:
        """``22:13:30`` (UTC; ``22:30`` when ticks are whole minutes, ``11-15 00:00`` over
        days) or, without wall-clock time, ``t=130 s`` in the capture's clock."""
        if not self.wall_clock:
            return f"t={number(ts)} s"
        if self.span > 86400:
            fmt = "%m-%d %H:%M"
        elif self.step >= 60 and ts % 60 == 0:
            fmt = "%H:%M"
        else:
            fmt = "%H:%M:%S"
        return time.strftime(fmt, time.gmtime(ts))

    def elapsed(self, ts: float) -> str:
        """``+1:05:10``: time since the capture start."""
        seconds = round(ts - self.start)
        h, rest = divmod(abs(seconds), 3600)
        m, s = divmod(rest, 60)
        sign = "-" if seconds < 0 else "+"
        return f"{sign}{h}:{m:02d}:{s:02d}" if h else f"{sign}{m}:{s:02d}"

    def moment(self, ts: float) -> str:
        """Hover text for a time: ``22:13:30 UTC (+0:10, capture t=1700000010)``."""
        own = f"capture t={ts:.0f}"
        if self.wall_clock:
            return f"{self.clock(ts)} UTC ({self.elapsed(ts)}, {own})"
        return f"{self.clock(ts)} ({self.elapsed(ts)})"

    def caption(self) -> str:
        if self.wall_clock:
            first, last = (
                time.strftime("%Y-%m-%d", time.gmtime(t)) for t in (self.start, self.end)
            )
            day = first if first == last else f"{first} to {last}"
            return f"time: UTC ({day}); below: time since the capture start"
        return (
            "time: the capture's own clock in seconds (its timestamps are not wall-clock "
            "time); below: time since the capture start"
        )


def _reduce(t: F64, y: F64) -> tuple[F64, F64]:
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


def _segments(x: F64, y: F64) -> list[tuple[F64, F64]]:
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
    breaks = ~ok | jump
    seg_id = np.cumsum(breaks)
    out = []
    for sid in np.unique(seg_id[ok]).tolist():
        sel = ok & (seg_id == sid)
        out.append((x[sel], y[sel]))
    return out


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round values (1, 2, 2.5, 5 x 10^k steps) covering [lo, hi], about ``count`` of them."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(lo / step) * step
    last = math.ceil(hi / step) * step
    n = round((last - first) / step)
    return [first + i * step for i in range(n + 1)]


@dataclass(frozen=True)
class Threshold:
    """A horizontal reference line (a warning level) with its label."""

    value: float
    label: str
    color: str = "#ef8f00"


def line_chart(
    axis: TimeAxis,
    t: Sequence[float],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    unit: str = "",
    y_range: tuple[float, float] | None = None,
    thresholds: Sequence[Threshold] = (),
) -> str:
    """Lines over time: ``t`` are capture seconds, one value per second per series.

    ``y_range`` fixes the scale (bus load: 0-100 %); otherwise it is rounded around the data.
    """
    tt = np.asarray(t, np.float64)
    if len(tt) == 0 or not series:
        return f'<p class="empty">{escape(title)}: no data.</p>'
    values = [np.asarray(v, np.float64) for v in series.values()]
    finite = np.concatenate([v[np.isfinite(v)] for v in values])
    if not finite.size:
        return f'<p class="empty">{escape(title)}: no value in the capture.</p>'
    if y_range is not None:
        y_ticks = nice_ticks(*y_range, count=6)
        lo, hi = y_range
    else:
        low, high = float(finite.min()), float(finite.max())
        # Noise around zero (-0.05 A on a 320 A scale) does not earn a negative tick.
        if low < 0 <= low + OVERLAP_SHARE * (high - low):
            low = 0.0
        y_ticks = nice_ticks(low, high)
        lo, hi = y_ticks[0], y_ticks[-1]
    plot_h = H - TOP - BOTTOM

    def py(y: F64 | np.float64) -> F64:
        return np.asarray(TOP + (1 - (np.asarray(y) - lo) / (hi - lo)) * plot_h)

    out = [f"<h3>{escape(title)}</h3>", _frame(axis, title, unit, y_ticks, py)]
    for th in thresholds:
        y = float(py(np.float64(th.value)))
        out.append(
            f'<line class="threshold" x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{th.color}" stroke-width="1.5" stroke-dasharray="6 4"/>'
            f'<text x="{W - RIGHT - 4}" y="{y - 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="{th.color}">{escape(th.label)}</text>'
        )
    xs = axis.x(tt)
    for i, v in enumerate(values):
        color, dash = PALETTE[i % len(PALETTE)], DASHES[i % len(DASHES)]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        rx, ry = _reduce(xs, v)
        for sx, sy in _segments(rx, ry):
            pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(sx, py(sy), strict=True))
            if len(sx) == 1:
                out.append(f'<circle cx="{sx[0]:.1f}" cy="{py(sy)[0]:.1f}" r="2" fill="{color}"/>')
            else:
                out.append(
                    f'<polyline class="series" fill="none" stroke="{color}" stroke-width="1.6"'
                    f'{dash_attr} points="{pts}"/>'
                )
    out.append(_legend(list(series)))
    out.append(_hover_columns(axis, tt, list(series), values, unit))
    out.append("</svg>")
    note = _overlap_note(values, hi - lo, unit)
    if note:
        out.append(f'<p class="chart-note">{escape(note)}</p>')
    return "".join(out)


def _frame(
    axis: TimeAxis,
    title: str,
    unit: str,
    y_ticks: list[float],
    py: Callable[[F64 | np.float64], F64],
) -> str:
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    out = [
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fafafa" '
        'stroke="#ccc"/>',
    ]
    for v in y_ticks:
        y = float(py(np.float64(v)))
        out.append(
            f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6e6e6"/>'
            f'<text class="ytick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" '
            f'font-size="11">{escape(number(v))}{escape(_unit_suffix(unit))}</text>'
        )
    out.append(_time_ticks(axis, TOP + plot_h))
    return "".join(out)


def _unit_suffix(unit: str) -> str:
    return "" if not unit else (unit if unit == "%" else f" {unit}")


def _time_ticks(
    axis: TimeAxis,
    bottom: float,
    left: float = LEFT,
    right: float = W - RIGHT,
    *,
    caption: bool = True,
) -> str:
    out = []
    for tick in axis.ticks():
        x = float(axis.x(tick, left, right))
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + 4}" stroke="#888"/>'
            f'<text class="xtick" x="{x:.1f}" y="{bottom + 15}" text-anchor="middle" '
            f'font-size="11">{escape(axis.clock(tick))}</text>'
            f'<text class="xtick-elapsed" x="{x:.1f}" y="{bottom + 27}" text-anchor="middle" '
            f'font-size="10" fill="#777">{escape(axis.elapsed(tick))}</text>'
        )
    if caption:
        out.append(
            f'<text class="axis-caption" x="{left}" y="{bottom + 41}" font-size="10" '
            f'fill="#555">{escape(axis.caption())}</text>'
        )
    return "".join(out)


def _legend(names: list[str]) -> str:
    out = []
    for i, name in enumerate(names):
        color, dash = PALETTE[i % len(PALETTE)], DASHES[i % len(DASHES)]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        y = TOP + 10 + 16 * i
        out.append(
            f'<line x1="{W - RIGHT + 8}" x2="{W - RIGHT + 34}" y1="{y}" y2="{y}" '
            f'stroke="{color}" stroke-width="2"{dash_attr}/>'
            f'<text class="legend" x="{W - RIGHT + 38}" y="{y + 4}" fill="{color}" '
            f'font-size="12">{escape(name)}</text>'
        )
    return "".join(out)


def _hover_columns(axis: TimeAxis, tt: F64, names: list[str], values: list[F64], unit: str) -> str:
    """Invisible columns over the plot whose titles give every series' value there."""
    out = []
    suffix = _unit_suffix(unit)
    for rows in np.array_split(np.arange(len(tt)), min(len(tt), HOVER_COLUMNS)):
        if not len(rows):
            continue
        a, b = float(tt[rows[0]]), float(tt[rows[-1]])
        x0 = float(axis.x(a))
        x1 = max(float(axis.x(b + 1.0)), x0 + 1.0)
        when = axis.moment(a) if a == b else f"{axis.moment(a)} to {axis.clock(b)}"
        lines = [when]
        for name, v in zip(names, values, strict=True):
            part = v[rows]
            part = part[np.isfinite(part)]
            if not part.size:
                text = "no value"
            elif float(part.min()) == float(part.max()):
                text = f"{number(float(part[0]))}{suffix}"
            else:
                text = f"{number(float(part.min()))} to {number(float(part.max()))}{suffix}"
            lines.append(f"{name}: {text}")
        out.append(
            f'<rect class="hover" x="{x0:.1f}" y="{TOP}" width="{min(x1, W - RIGHT) - x0:.1f}" '
            f'height="{H - TOP - BOTTOM}" fill="transparent" pointer-events="all">'
            f"<title>{escape(chr(10).join(lines))}</title></rect>"
        )
    return "".join(out)


def _overlap_note(values: list[F64], y_span: float, unit: str) -> str:
    """In words, when all series lie on top of each other (the chart alone cannot say)."""
    if len(values) < 2:
        return ""
    stack = np.vstack(values)
    both = np.isfinite(stack).sum(axis=0) >= 2
    if not both.any():
        return ""
    cols = stack[:, both]
    spread = float(np.nanmax(np.nanmax(cols, axis=0) - np.nanmin(cols, axis=0)))
    if spread > OVERLAP_SHARE * y_span:
        return ""
    return (
        f"The {len(values)} lines lie on top of each other: at every second all are within "
        f"{number(spread)}{_unit_suffix(unit)} of each other (hover a time for each value)."
    )


def presence_timeline(
    axis: TimeAxis, t: Sequence[float], rows: Mapping[str, Sequence[float]], *, title: str
) -> str:
    """One row per node; green for every second the node transmitted, red where it was silent."""
    tt = np.asarray(t, np.float64)
    if len(tt) == 0 or not rows:
        return f'<p class="empty">{escape(title)}: no data.</p>'
    row_h = 16
    left = 140  # room for "power module 12"
    right = W - RIGHT
    height = TOP + 46 + row_h * len(rows)
    out = [
        f"<h3>{escape(title)}</h3>",
        f'<svg class="chart" viewBox="0 0 {W} {height}" role="img" aria-label="{escape(title)}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    # Seconds missing from the axis (the whole bus silent) break a run too.
    contiguous = np.concatenate([[True], np.diff(tt) <= 1.0])
    for i, (name, counts) in enumerate(rows.items()):
        y = TOP + i * row_h
        c = np.asarray(counts, np.float64)
        out.append(
            f'<text x="{left - 6}" y="{y + 12}" text-anchor="end" font-size="11">'
            f"{escape(name)}</text>"
            f'<rect x="{left}" y="{y + 2}" width="{right - left}" height="{row_h - 4}" '
            f'fill="#e57373"><title>{escape(name)}: silent</title></rect>'
        )
        for start, stop in _runs(c > 0, contiguous):
            a, b = float(tt[start]), float(tt[stop - 1]) + 1.0
            x0 = float(axis.x(a, left, right))
            w = max(1.0, float(axis.x(b, left, right)) - x0)
            frames = int(c[start:stop].sum())
            tip = (
                f"{name}: transmitting from {axis.moment(a)} to {axis.clock(b)} "
                f"({number(b - a)} s, {frames:,} frames)"
            )
            out.append(
                f'<rect x="{x0:.1f}" y="{y + 2}" width="{w:.1f}" height="{row_h - 4}" '
                f'fill="#2ca02c"><title>{escape(tip)}</title></rect>'
            )
    out.append(_time_ticks(axis, TOP + row_h * len(rows) + 2, left, right))
    out.append(
        f'<text x="{right + 8}" y="{TOP + 12}" font-size="11" fill="#2ca02c">■ transmitting</text>'
        f'<text x="{right + 8}" y="{TOP + 28}" font-size="11" fill="#e57373">■ silent</text>'
        "</svg>"
    )
    return "".join(out)


def _runs(
    mask: npt.NDArray[np.bool_], contiguous: npt.NDArray[np.bool_] | None = None
) -> list[tuple[int, int]]:
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


# -- episode strips: a finding's intervals on the capture's time axis -------------------------

STRIP_LEFT = 140  # the presence timeline's label column, so strips line up with it
STRIP_ROW_H = 14
MERGE_PX = 2.0  # episodes closer than this on the strip are drawn as one bar
SEVERITY_COLORS = {"critical": "#c62828", "warning": "#ef8f00", "info": "#1565c0"}


@dataclass(frozen=True)
class StripEpisode:
    """One interval of a finding: ``end`` None when it lasted to the end of the capture."""

    start: float
    end: float | None
    tip: str  # its hover text (start, end or "still present", duration)


def episode_strip(
    axis: TimeAxis,
    rows: Sequence[tuple[str, Sequence[StripEpisode]]],
    *,
    title: str,
    severity: str = "warning",
) -> str:
    """One row per subject; a bar for each episode on the capture's time axis.

    An episode still present at the end of the capture runs to the axis' right edge and
    ends in an arrow head, so an open fault never looks like one that stopped.  A short
    episode is drawn at least 2 px wide, so it stays visible on a long capture; episodes
    closer than :data:`MERGE_PX` are one bar whose tooltip names the first and the last, so a
    fault that came back thousands of times draws at most a few hundred bars.
    """
    color = SEVERITY_COLORS.get(severity, "#7f7f7f")
    left, right = STRIP_LEFT, W - RIGHT
    height = TOP + STRIP_ROW_H * len(rows) + 32
    out = [
        f'<svg class="chart strip" viewBox="0 0 {W} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (name, episodes) in enumerate(rows):
        y = TOP + i * STRIP_ROW_H
        out.append(
            f'<text class="strip-label" x="{left - 6}" y="{y + 11}" text-anchor="end" '
            f'font-size="11">{escape(name)}</text>'
            f'<rect x="{left}" y="{y + 2}" width="{right - left}" height="{STRIP_ROW_H - 4}" '
            'fill="#eef0f2"/>'
        )
        for ep in _merge_close(axis, episodes):
            out.append(_episode_bar(axis, ep, y, color))
    bottom = TOP + STRIP_ROW_H * len(rows) + 2
    out.append(_time_ticks(axis, bottom, left, right, caption=False))  # the charts have it
    out.append("</svg>")
    return "".join(out)


def _merge_close(axis: TimeAxis, episodes: Sequence[StripEpisode]) -> list[StripEpisode]:
    """Episodes (in time order) whose gap is under :data:`MERGE_PX` drawn as one bar."""
    scale = (W - RIGHT - STRIP_LEFT) / axis.span  # px per second
    out: list[StripEpisode] = []
    group: list[StripEpisode] = []
    for ep in episodes:
        last = group[-1] if group else None
        if last is not None and last.end is not None and (ep.start - last.end) * scale < MERGE_PX:
            group.append(ep)
            continue
        if group:
            out.append(_one_bar(group))
        group = [ep]
    if group:
        out.append(_one_bar(group))
    return out


def _one_bar(group: list[StripEpisode]) -> StripEpisode:
    if len(group) == 1:
        return group[0]
    first, last = group[0], group[-1]
    tip = f"{len(group)} episodes close together; the first: {first.tip}; the last: {last.tip}"
    return StripEpisode(first.start, last.end, tip)


def _episode_bar(axis: TimeAxis, ep: StripEpisode, y: float, color: str) -> str:
    left, right = STRIP_LEFT, W - RIGHT
    end = axis.end if ep.end is None else ep.end
    x0 = min(max(float(axis.x(ep.start, left, right)), left), right - 2.0)
    x1 = min(max(float(axis.x(end, left, right)), x0 + 2.0), right)
    kind = "episode open" if ep.end is None else "episode"
    bar = (
        f'<rect class="{kind}" x="{x0:.1f}" y="{y + 2}" width="{x1 - x0:.1f}" '
        f'height="{STRIP_ROW_H - 4}" fill="{color}"><title>{escape(ep.tip)}</title></rect>'
    )
    if ep.end is None:  # an arrow head past the end: it did not stop
        mid = y + STRIP_ROW_H / 2
        bar += (
            f'<polygon class="open-mark" points="{right:.1f},{y + 1} {right + 7:.1f},{mid} '
            f'{right:.1f},{y + STRIP_ROW_H - 1}" fill="{color}"/>'
        )
    return bar
