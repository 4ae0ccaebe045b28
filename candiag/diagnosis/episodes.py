"""Episodes: a fault as intervals on the timeline, and the array helpers that make them.

A finding is not an instant's verdict but an interval (an *episode*) that starts, ends and
may come back: one fault that recurs is one finding with several episodes.  Rules produce
episodes from timelines in array passes (:func:`runs`, :func:`rolling_sum`), and one
documented hysteresis turns raw intervals into episodes (:func:`settle`):

* an interval shorter than ``raise_after_s`` is not an episode (open ones are kept: they
  are not over yet);
* two intervals closer than ``clear_after_s`` are one episode (a flapping fault does not
  make a new episode each time it flickers).

Times are capture (or live) seconds.  ``end is None`` means the fault was still present at
the end of the data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Episode:
    """One interval of a fault: ``[start, end)``, ``end`` None while it lasts."""

    start: float
    end: float | None = None

    def end_or(self, default: float) -> float:
        return default if self.end is None else self.end

    def duration(self, now: float | None = None) -> float | None:
        """Seconds it lasted (up to ``now`` for an open episode; None if unknown)."""
        end = self.end if self.end is not None else now
        return None if end is None else max(0.0, end - self.start)

    def overlaps(self, other: Episode, grace_s: float = 0.0) -> bool:
        """True when the two intervals meet, allowing ``grace_s`` around ``other``."""
        mine_end = np.inf if self.end is None else self.end
        other_end = np.inf if other.end is None else other.end + grace_s
        return self.start < other_end and other.start - grace_s < mine_end

    def to_json(self, now: float | None = None) -> dict[str, float | None]:
        duration = self.duration(now)
        return {
            "start": self.start,
            "end": self.end,
            "duration_s": None if duration is None else round(duration, 6),
        }


def runs(seconds: I64, flags: Bools) -> list[Episode]:
    """Intervals of consecutive seconds (one apart) where ``flags`` holds.

    ``seconds`` is a sorted per-second axis that may skip silent seconds; a skipped
    second ends a run.  Each run is ``[first second, last second + 1)``.
    """
    if seconds.size == 0 or not flags.any():
        return []
    on = np.flatnonzero(flags)
    s = seconds[on]
    breaks = np.flatnonzero(np.diff(s) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [s.size]])
    return [
        Episode(float(s[a]), float(s[b - 1] + 1))
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
    ]


def rolling_sum(seconds: I64, values: F64 | I64, window: int) -> F64:
    """For each second ``t`` of the axis, the sum of ``values`` over ``(t - window, t]``.

    The axis may skip seconds (their values are zero): cumulative sums and a search
    place each window, so the cost does not depend on how long the silences are.
    """
    if seconds.size == 0:
        return np.zeros(0, np.float64)
    csum = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    lo = np.searchsorted(seconds, seconds - window, side="right")
    out: F64 = csum[np.arange(1, seconds.size + 1)] - csum[lo]
    return out


def settle(
    raw: Iterable[Episode], *, raise_after_s: float = 0.0, clear_after_s: float = 0.0
) -> list[Episode]:
    """The hysteresis of the module docstring: merge close intervals, drop short ones."""
    ordered = sorted(raw, key=lambda e: e.start)
    merged: list[Episode] = []
    for ep in ordered:
        if merged:
            last = merged[-1]
            if last.end is None:
                continue  # an open episode swallows everything after it
            if ep.start - last.end < clear_after_s or ep.start <= last.end:
                end = None if ep.end is None else max(last.end, ep.end)
                merged[-1] = Episode(last.start, end)
                continue
        merged.append(ep)
    return [e for e in merged if e.end is None or e.end - e.start >= raise_after_s]


def close_at(
    episodes: Sequence[Episode], data_end: float | None, tolerance_s: float
) -> list[Episode]:
    """Episodes that reach the end of the data (within ``tolerance_s``) are left open:
    nothing proves the fault ended, so it is not shown as cleared."""
    if data_end is None:
        return list(episodes)
    return [
        Episode(e.start, None) if e.end is not None and e.end >= data_end - tolerance_s else e
        for e in episodes
    ]
