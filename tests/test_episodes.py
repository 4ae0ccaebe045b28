"""Episodes: runs, rolling sums over sparse seconds, hysteresis (issue 15 §1)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from candiag.diagnosis.episodes import Episode, close_at, rolling_sum, runs, settle


def test_runs_are_consecutive_seconds_and_a_skipped_second_ends_one() -> None:
    seconds = np.array([10, 11, 12, 14, 15, 20], np.int64)
    flags = np.array([True, True, False, True, True, True])
    assert runs(seconds, flags) == [Episode(10, 12), Episode(14, 16), Episode(20, 21)]


@given(st.lists(st.integers(0, 500), unique=True, min_size=1, max_size=60), st.integers(1, 90))
def test_rolling_sum_equals_the_sum_over_each_window(points: list[int], window: int) -> None:
    seconds = np.array(sorted(points), np.int64)
    values = (seconds % 7).astype(np.float64)
    expected = [values[(seconds > t - window) & (seconds <= t)].sum() for t in seconds]
    assert np.allclose(rolling_sum(seconds, values, window), expected)


def test_settle_merges_flickers_and_drops_short_blips() -> None:
    raw = [Episode(0, 5), Episode(7, 9), Episode(40, 40.5), Episode(100, None)]
    assert settle(raw, clear_after_s=3.0) == [Episode(0, 9), Episode(40, 40.5), Episode(100, None)]
    assert settle(raw, raise_after_s=1.0, clear_after_s=3.0) == [Episode(0, 9), Episode(100, None)]


def test_an_episode_that_reaches_the_end_of_the_data_is_not_shown_as_cleared() -> None:
    assert close_at([Episode(1, 2), Episode(5, 9.9)], 10.0, 0.5) == [
        Episode(1, 2),
        Episode(5, None),
    ]


def test_overlap_with_grace() -> None:
    assert Episode(10, 20).overlaps(Episode(21, 30), grace_s=2)
    assert not Episode(10, 20).overlaps(Episode(25, 30), grace_s=2)
    assert Episode(10, None).overlaps(Episode(1000, 1001))
