"""The shared array helpers of the health package."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from candiag.health.arrays import run_bounds


def test_run_bounds_are_slice_bounds() -> None:
    starts, stops = run_bounds(np.array([3, 3, 5, 7, 7, 7]))
    assert starts.tolist() == [0, 2, 3] and stops.tolist() == [2, 3, 6]
    one_start, one_stop = run_bounds(np.array([9]))
    assert one_start.tolist() == [0] and one_stop.tolist() == [1]
    none_start, none_stop = run_bounds(np.array([], np.int64))
    assert none_start.size == 0 and none_stop.size == 0


@given(st.lists(st.integers(0, 4), max_size=60))
def test_run_bounds_cover_the_array_with_runs_of_equal_values(values: list[int]) -> None:
    keys = np.sort(np.array(values, np.int64))
    starts, stops = run_bounds(keys)
    assert (stops - starts).sum() == len(keys)
    assert starts.tolist() == [0, *stops[:-1].tolist()] if len(keys) else starts.size == 0
    for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
        run = keys[start:stop]
        assert run.size > 0 and (run == run[0]).all()
    assert len(set(keys[starts].tolist())) == len(starts)  # each value is one run
