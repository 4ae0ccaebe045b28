"""Sliding windows against a naive recount of every frame ever seen."""

from __future__ import annotations

import numpy as np
import pytest

from candiag.health.busload import frame_bits
from candiag.health.errorframes import ERROR_CLASSES
from candiag.health.windows import (
    BUS_COLUMNS,
    PROTOCOL_TYPE_COLUMNS,
    WINDOWS,
    BusWindows,
    SecondRing,
)
from candiag.ingest.frames import FrameBatch
from candiag.socketcan_errors import CAN_ERR_PROT, PROTOCOL_TYPE_FLAGS
from tests.synthetic import synthetic_batch


def _stream(seed: int, n_batches: int, horizon: int) -> list[FrameBatch]:
    """Random batches: bursts, gaps longer than the ring, out-of-order rows inside a batch."""
    rng = np.random.default_rng(seed)
    t = 1_000_000.0 + rng.random() * 1000
    batches = []
    for _ in range(n_batches):
        n = int(rng.integers(0, 300))
        b = synthetic_batch(n, seed=int(rng.integers(1 << 30)), error_share=0.2, remote_share=0.1)
        span = rng.choice([0.5, 5.0, horizon * 0.7])
        b.timestamp = np.sort(t + rng.random(n) * span)
        if n > 3:  # shuffle within the batch
            b = b.take(rng.permutation(n))
        batches.append(b)
        t += float(span) + float(rng.choice([0.0, 1.0, 30.0, horizon * 1.5, horizon * 3]))
    return batches


def _naive(frames: list[FrameBatch], lo: int, hi: int) -> dict[str, int]:
    """Column totals of all frames with an integer second in [lo, hi]."""
    out = dict.fromkeys(BUS_COLUMNS, 0)
    for b in frames:
        sec = np.floor(b.timestamp).astype(np.int64)
        sel = (sec >= lo) & (sec <= hi)
        if not sel.any():
            continue
        sub = b.take(sel)
        out["frames_data"] += int(sub.is_data.sum())
        out["frames_remote"] += int(sub.is_remote.sum())
        out["frames_error"] += int(sub.is_error.sum())
        nominal, data_phase = frame_bits(sub)
        out["bits_nominal"] += int(nominal.sum())
        out["bits_data"] += int(data_phase.sum())
        for i, c in enumerate(ERROR_CLASSES):
            out[f"errors_{c}"] += int(((sub.can_id[sub.is_error] >> i) & 1).sum())
        protocol = sub.is_error & ((sub.can_id & CAN_ERR_PROT) != 0)
        for t in PROTOCOL_TYPE_COLUMNS:
            out[f"protocol_{t}"] += int(
                ((sub.data[protocol, 2] & PROTOCOL_TYPE_FLAGS[t]) != 0).sum()
            )
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("horizon", [40, 3600])
def test_windows_match_naive_recount(seed: int, horizon: int) -> None:
    w = BusWindows(500_000, horizon=horizon)
    seen: list[FrameBatch] = []
    head: int | None = None
    for batch in _stream(seed, 25, horizon):
        w.update(batch)
        seen.append(batch)
        if len(batch):
            newest = int(np.floor(batch.timestamp.max()))
            head = newest if head is None else max(head, newest)
        if head is None:
            continue
        for seconds in [*WINDOWS.values(), 7]:
            span = min(seconds, horizon)
            assert w.counts(seconds) == _naive(seen, head - span + 1, head), (seconds, head)


def test_live_time_expires_buckets() -> None:
    w = BusWindows(250_000)
    b = synthetic_batch(1000, start=100.0, rate_hz=100.0)  # 100.0 .. ~110 s
    w.update(b)
    assert w.counts(10)["frames_data"] + w.counts(10)["frames_error"] > 0
    w.advance(200.0)
    assert w.counts(10) == dict.fromkeys(BUS_COLUMNS, 0)
    assert w.counts(300)["frames_data"] == int(b.is_data.sum())
    w.advance(200.0 + 3600)
    assert w.counts(3600) == dict.fromkeys(BUS_COLUMNS, 0)


def test_load_ratio_uses_complete_seconds_and_peak() -> None:
    # 2000 frames/s of known bits for 20 s, then one busier second.
    n = 40_000
    b = synthetic_batch(n, start=0.0, rate_hz=2000, error_share=0.0)
    b.timestamp = np.arange(n, dtype=np.float64) / 2000
    w = BusWindows(500_000)
    w.update(b)
    nominal, _ = frame_bits(b)
    sec = np.floor(b.timestamp).astype(int)
    per_second = np.bincount(sec, weights=nominal) / 500_000
    # Last complete second is 18 (second 19 is the current one): seconds 9..18.
    assert w.load_ratio(10) == pytest.approx(per_second[9:19].mean())
    # Only 19 complete seconds exist: a 60 s window divides by what it covers.
    assert w.load_ratio(60) == pytest.approx(per_second[:19].mean())
    assert w.max_ratio_1s() == pytest.approx(per_second.max())
    assert w.max_ratio_1s(5) == pytest.approx(per_second[15:20].max())


def test_error_classes_and_bus_off_events() -> None:
    b = synthetic_batch(5000, start=50.0, error_share=0.3)
    w = BusWindows()
    w.update(b, bus_off_times=np.array([50.5, 51.2, 10.0]))
    expected = {
        c: int(((b.can_id[b.is_error] >> i) & 1).sum()) for i, c in enumerate(ERROR_CLASSES)
    }
    assert w.error_counts(3600) == expected
    assert w.counts(3600)["bus_off_events"] == 3
    with pytest.raises(ValueError, match="bitrate"):
        w.load_ratio(10)


def test_ring_history_keeps_every_on_time_second() -> None:
    ring = SecondRing(["x"], horizon=10, keep_history=True)
    expected: dict[int, int] = {}
    rng = np.random.default_rng(4)
    head = None
    for _ in range(200):
        seconds = np.unique(rng.integers(0, 15, 5) + (head or 0) + int(rng.integers(-12, 30)))
        seconds = seconds[seconds >= 0]
        totals = rng.integers(1, 5, (seconds.size, 1))
        oldest_ok = -(10**9) if head is None else head - 10 + 1
        for s, v in zip(seconds.tolist(), totals[:, 0].tolist(), strict=True):
            if s >= oldest_ok:
                expected[s] = expected.get(s, 0) + v
        ring.add(seconds.astype(np.int64), totals.astype(np.int64))
        if seconds.size:
            head = max(head if head is not None else -(10**9), int(seconds.max()))
    got_s, got_v = ring.series()
    assert dict(zip(got_s.tolist(), got_v[:, 0].tolist(), strict=True)) == expected
    assert got_s.tolist() == sorted(got_s.tolist())


def test_memory_is_fixed_by_the_longest_window() -> None:
    w = BusWindows(500_000)
    before = w.nbytes
    for k in range(5):
        w.update(synthetic_batch(20_000, start=1000.0 + 4000 * k, seed=k))
    assert w.nbytes == before
    assert before == 3600 * len(BUS_COLUMNS) * 8 + 2 * len(BUS_COLUMNS) * 8


def test_series_of_a_two_hour_capture_keeps_every_second() -> None:
    b = synthetic_batch(72_000, start=5000.0, rate_hz=10.0, error_share=0.01, seed=6)
    w = BusWindows(125_000, keep_history=True)
    for chunk in np.array_split(np.arange(len(b)), 13):
        w.update(b.take(chunk))
    series = w.plot_series()
    seconds = np.floor(b.timestamp).astype(np.int64)
    assert series["second"] == np.unique(seconds).tolist()
    assert sum(series["frames_data"]) == int(b.is_data.sum())
    assert sum(series["frames_error"]) == int(b.is_error.sum())
    assert max(series["load_ratio"]) == pytest.approx(w.max_ratio_1s())
    assert w.ring.late_dropped.sum() == 0


@pytest.mark.parametrize("split_first", [False, True])
def test_a_batch_longer_than_the_horizon_counts_every_second(split_first: bool) -> None:
    """Two hours in one batch (a thin stretch after a busy minute): its first hour leaves the
    ring straight to history with frames, error classes and load, as if fed in small
    batches (an adversarial review found them lost when added to the ring apart)."""
    busy = synthetic_batch(30_000, start=5000.0, rate_hz=600.0, error_share=0.05, seed=2)
    thin = synthetic_batch(7_200, start=5060.0, rate_hz=1.0, error_share=0.0, seed=3)
    whole = FrameBatch.concat([busy, thin])
    small = BusWindows(125_000, keep_history=True)
    for chunk in np.array_split(np.arange(len(whole)), 400):
        small.update(whole.take(chunk))
    big = BusWindows(125_000, keep_history=True)
    if split_first:  # a short first batch, then the rest in one: the ring already has a head
        big.update(whole.take(slice(0, 1000)))
        big.update(whole.take(slice(1000, None)))
    else:
        big.update(whole)
    assert big.plot_series() == small.plot_series()
    assert big.max_ratio_1s() == pytest.approx(small.max_ratio_1s())
    assert small.max_ratio_1s() > 0.05
    assert big.ring.late_dropped.sum() == 0
    errors = sum(big.plot_series()["frames_error"])
    assert errors == int(whole.is_error.sum()) > 1000
