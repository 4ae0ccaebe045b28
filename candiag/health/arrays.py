"""Array helpers the health trackers share: whole-array numpy steps, no per-element loops."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

Bounds = npt.NDArray[np.intp]


def run_bounds(keys: npt.NDArray[Any]) -> tuple[Bounds, Bounds]:
    """Where each run of equal values in ``keys`` (sorted, or at least grouped) starts and stops.

    Run ``i`` is ``keys[starts[i]:stops[i]]``: ``stops`` is exclusive, like a slice bound, so
    ``stops - starts`` are the run lengths and ``stops - 1`` the last index of each run.  An
    empty ``keys`` has no runs.
    """
    n = len(keys)
    if n == 0:
        return np.empty(0, np.intp), np.empty(0, np.intp)
    change = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    starts = np.empty(change.size + 1, np.intp)
    starts[0] = 0
    starts[1:] = change
    stops = np.empty_like(starts)
    stops[:-1] = change
    stops[-1] = n
    return starts, stops
