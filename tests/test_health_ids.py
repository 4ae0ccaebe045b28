"""Per-identifier statistics against a per-id recount, and the cycle-time judgment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from candiag.errors import ConfigError
from candiag.health.ids import CappedIdCounter, IdStats, id_key_text
from candiag.health.thresholds import CycleThresholds, load_thresholds
from candiag.ingest.frames import FLAG_EXTENDED, FrameBatch
from tests.synthetic import synthetic_batch


def _periodic(
    can_id: int, period: float, n: int, jitter: float, seed: int, start: float = 0.0
) -> FrameBatch:
    rng = np.random.default_rng(seed)
    ts = start + np.arange(n) * period + rng.normal(0, jitter, n)
    return FrameBatch(
        timestamp=ts,
        can_id=np.full(n, can_id, np.uint32),
        flags=np.full(n, FLAG_EXTENDED, np.uint8),
        dlc=np.full(n, 8, np.uint8),
        data=np.zeros((n, 8), np.uint8),
        channel=np.zeros(n, np.int16),
        channels=["can1"],
    )


def test_stats_match_per_id_recount_across_batches() -> None:
    batch = synthetic_batch(
        20_000, seed=11, error_share=0.05, remote_share=0.05, channels=("can0", "can1")
    )
    stats = IdStats()
    for chunk in np.array_split(np.arange(len(batch)), 9):
        stats.update(batch.take(chunk))
    rows = {(r.channel, r.can_id, r.extended, r.kind): r for r in stats.rows()}
    ok = ~batch.is_error
    expected_keys = set()
    for i in np.flatnonzero(ok):
        expected_keys.add(
            (
                batch.channels[batch.channel[i]],
                int(batch.can_id[i]),
                bool(batch.flags[i] & FLAG_EXTENDED),
                "remote" if batch.is_remote[i] else "data",
            )
        )
    assert set(rows) == expected_keys
    for (ch, cid, ext, kind), row in list(rows.items())[:40]:
        sel = (
            ok
            & (batch.can_id == cid)
            & (np.array(batch.channels)[batch.channel] == ch)
            & (batch.is_extended == ext)
            & (batch.is_remote == (kind == "remote"))
        )
        ts = np.sort(batch.timestamp[sel])
        d = np.diff(ts)
        assert row.count == ts.size
        assert row.first_seen == ts[0] and row.last_seen == ts[-1]
        assert row.intervals == d.size
        assert row.period_mean == pytest.approx(d.mean(), rel=1e-9)
        assert row.period_std == pytest.approx(d.std(), rel=1e-6)
        assert (row.period_min, row.period_max) == (d.min(), d.max())
        p95 = float(np.percentile(d, 95, method="inverted_cdf"))
        assert row.period_p95 == pytest.approx(p95, rel=0.025)  # 16 bins per octave


def test_welford_merge_is_stable_for_large_timestamps() -> None:
    b = _periodic(0x0283F001, 0.1, 50_000, 0.001, seed=1, start=1.7e9)
    stats = IdStats()
    for chunk in np.array_split(np.arange(len(b)), 50):
        stats.update(b.take(chunk))
    (row,) = stats.rows()
    d = np.diff(np.sort(b.timestamp))
    assert row.period_std == pytest.approx(d.std(), rel=1e-4)
    assert row.period_mean == pytest.approx(0.1, rel=1e-3)


def test_cycle_check_with_thresholds() -> None:
    stats = IdStats()
    stats.update(_periodic(0x100, 0.100, 200, 0.002, seed=2))  # keeps 100 ms
    stats.update(_periodic(0x200, 0.130, 200, 0.002, seed=3))  # declared 100 ms: 30 % slow
    stalls = _periodic(0x300, 0.100, 200, 0.0, seed=4)
    stalls.timestamp[::10] += 0.09  # every 10th frame late: mean fine, p95 too long
    stalls.timestamp.sort()
    stats.update(stalls)
    stats.update(_periodic(0x400, 0.1, 3, 0.0, seed=5))  # too few periods to judge
    checks = {
        c.row.can_id: c
        for c in stats.check_cycles({0x100: 100, 0x200: 100, 0x300: 100, 0x400: 100})
    }
    assert checks[0x100].keeps_cycle is True
    assert checks[0x200].keeps_cycle is False and "+30%" in checks[0x200].reason
    assert checks[0x300].keeps_cycle is False and "late" in checks[0x300].reason
    assert checks[0x400].keeps_cycle is None
    # Looser thresholds let the stalling one pass; a callable lookup works too.
    loose = CycleThresholds(mean_tolerance=0.4, p95_factor=2.5, min_intervals=2)
    again = {
        c.row.can_id: c.keeps_cycle
        for c in stats.check_cycles(lambda cid, ext: 100.0 if cid != 0x400 else None, loose)
    }
    assert again == {0x100: True, 0x200: True, 0x300: True}


def test_thresholds_file_defaults_and_overrides(tmp_path: Path) -> None:
    t = load_thresholds()
    assert t.cycle == CycleThresholds(mean_tolerance=0.10, p95_factor=1.5, min_intervals=10)
    user = tmp_path / "mine.toml"
    user.write_text("[cycle]\np95_factor = 2.0\n")
    assert load_thresholds(user).cycle.p95_factor == 2.0
    assert load_thresholds(user).cycle.mean_tolerance == 0.10
    user.write_text('[cycle]\np95_factor = "big"\nmin_intervals = 2.5\n[nope]\nx = 1\n')
    with pytest.raises(ConfigError) as err:
        load_thresholds(user)
    assert len(err.value.problems) == 3
    assert "cycle.p95_factor" in str(err.value) and "mine.toml" in str(err.value)


def test_id_cap_bounds_memory_and_counts_the_rest() -> None:
    batch = synthetic_batch(5000, seed=8, error_share=0.0, extended_share=1.0)
    batch.can_id[:] = np.arange(5000, dtype=np.uint32)  # garbage: every frame a new id
    stats = IdStats(max_ids=100)
    stats.update(batch.take(slice(0, 2500)))
    stats.update(batch.take(slice(2500, 5000)))
    assert len(stats) == 100
    assert stats.overflow_frames == 4900
    assert sum(r.count for r in stats.rows()) == 100
    assert stats.to_json()["untracked_frames"] == 4900


# -- the capped counter ---------------------------------------------------------------


def test_capped_counter_keeps_admitted_ids_and_exact_totals() -> None:
    counter = CappedIdCounter(cap=3)
    counter.update({1: 5, 2: 1})
    counter.update({3: 2, 4: 7, 1: 1})  # 4 arrives when the cap is reached
    counter.update({4: 1, 2: 2})
    assert dict(counter.counts) == {1: 6, 2: 3, 3: 2}
    assert counter.untracked == 8
    assert counter.total() == 19


def test_capped_counter_from_arrays_keeps_standard_and_extended_apart() -> None:
    counter = CappedIdCounter(cap=3)
    ids = np.array([0x100, 0x100, 0x200, 0x300, 0x400, 0x0283F001], np.uint32)
    counter.add(ids, np.array([False, False, False, False, False, True]))
    assert counter.labelled("overflow") == {"0x100": 2, "0x200": 1, "0x300": 1, "overflow": 2}
    counter.add(np.array([0x400, 0x100], np.uint32), np.array([False, False]))
    second = counter.labelled("overflow")
    assert second["0x100"] == 3 and second["overflow"] == 3 and len(counter) == 3
    both = CappedIdCounter()
    both.add(np.array([0x100, 0x100], np.uint32), np.array([False, True]))
    assert both.labelled("overflow") == {"0x100": 1, "0x00000100": 1}
    assert [id_key_text(k) for k in sorted(both.counts)] == ["0x100", "0x00000100"]


@pytest.mark.parametrize("period", [0.1, 0.0999, 0.25, 1.0, 3.7])
def test_p95_is_never_outside_the_measured_periods(period: float) -> None:
    """The histogram's bin centre may lie above every period in the bin: a perfectly
    regular id reports its one period, not a p95 above its maximum (an adversarial review)."""
    ts = 1_700_000_000.0 + period * np.arange(200)
    n = ts.size
    batch = FrameBatch(
        ts,
        np.full(n, 0x123, np.uint32),
        np.zeros(n, np.uint8),
        np.full(n, 8, np.uint8),
        np.zeros((n, 8), np.uint8),
        np.zeros(n, np.int16),
        ["can0"],
    )
    stats = IdStats()
    stats.update(batch)
    (row,) = stats.rows()
    assert row.period_min is not None and row.period_max is not None
    assert row.period_p95 is not None
    assert row.period_min <= row.period_p95 <= row.period_max


def _frames(ts: list[float], can_id: int = 0x300) -> FrameBatch:
    n = len(ts)
    return FrameBatch(
        np.array(ts, np.float64),
        np.full(n, can_id, np.uint32),
        np.zeros(n, np.uint8),
        np.full(n, 8, np.uint8),
        np.zeros((n, 8), np.uint8),
        np.zeros(n, np.int16),
        ["can0"],
    )


def test_a_late_frame_makes_no_period_before_or_after_it() -> None:
    """A frame older than the id's last one (reordered by a host) is counted out of order;
    the next frame's period runs from the newest frame, not from the late one (a review
    found a false 3 s period on a 200 ms id, and a false cycle break with it)."""
    on_time = [1_700_000_000.0 + 0.2 * k for k in range(50)]  # up to +9.8 s
    later = [1_700_000_007.0] + [1_700_000_010.0 + 0.2 * k for k in range(50)]
    stats = IdStats()
    stats.update(_frames(on_time))
    stats.update(_frames(later))
    (row,) = stats.rows()
    assert stats.out_of_order == 1
    assert row.intervals == 99 and row.period_max == pytest.approx(0.2)
    assert row.period_mean == pytest.approx(0.2)


def test_a_late_frame_across_a_step_breaks_no_cycle() -> None:
    from candiag.decode.dbc import load_reference_database
    from candiag.health.pipeline import BusPipeline

    pipe = BusPipeline("can0", load_reference_database())
    start = 1_700_000_000.0
    pipe.process(_frames([start + 0.2 * k for k in range(50)]))
    pipe.process(_frames([start + 7.0] + [start + 10.0 + 0.2 * k for k in range(200)]))
    assert pipe.cycle_breaks() == []
