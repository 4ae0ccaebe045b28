"""Bitrate inference from timestamps: right rate or an honest None, never a wrong rate.

The captures here are built without the inference code: each frame's length comes from the
bit-level reference of ``tests/can_bitstream.py``'s ``reference_bitstream`` (plain Python, bit
by bit), frames arrive at random (Poisson, at a chosen offered load) and leave a shared wire
one after the other in a plain per-frame loop, stamped at their end (SocketCAN) or their
start (hardware that stamps SOF).  Then the timestamps are spoiled the way real ones are:
software jitter, USB hosts that stamp per transfer, duplicated frames, a sender with a fixed
pace, two buses merged into one channel.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from candiag.health.bitrate import (
    DEFAULT_BITRATE,
    MIN_EVIDENCE_PAIRS,
    STANDARD_BITRATES,
    BitrateEvidence,
    BitrateInference,
    choose_bitrate,
    infer_bitrate,
)
from candiag.health.busload import TRAILER_BITS
from candiag.ingest.frames import FLAG_BRS, FLAG_ERROR, FLAG_EXTENDED, FLAG_FD, FrameBatch
from tests.can_bitstream import reference_bitstream

T0 = 1_700_000_000.0


@dataclasses.dataclass(frozen=True)
class Frame:
    can_id: int
    extended: bool
    payload: bytes
    bits: int  # on the wire, interframe space included


@cache
def frame_pool() -> tuple[Frame, ...]:
    """400 random classic frames with their bit length from the bit-level reference."""
    rng = np.random.default_rng(20_240_601)
    frames = []
    for _ in range(400):
        extended = bool(rng.integers(0, 2))
        can_id = int(rng.integers(0, 0x1FFFFFFF if extended else 0x7FF))
        payload = bytes(rng.integers(0, 256, int(rng.choice([0, 2, 4, 8, 8, 8]))).tolist())
        _, wire = reference_bitstream(can_id, extended=extended, dlc=len(payload), data=payload)
        frames.append(Frame(can_id, extended, payload, len(wire) + TRAILER_BITS))
    return tuple(frames)


def to_batch(frames: Sequence[Frame], times: Sequence[float], channel: str = "can0") -> FrameBatch:
    n = len(frames)
    data = np.zeros((n, 8), np.uint8)
    for row, frame in enumerate(frames):
        data[row, : len(frame.payload)] = list(frame.payload)
    return FrameBatch(
        timestamp=np.asarray(times, np.float64),
        can_id=np.array([f.can_id for f in frames], np.uint32),
        flags=np.array([FLAG_EXTENDED if f.extended else 0 for f in frames], np.uint8),
        dlc=np.array([len(f.payload) for f in frames], np.uint8),
        data=data,
        channel=np.zeros(n, np.int16),
        channels=[channel],
    )


def capture(
    bitrate: int,
    n: int,
    load: float,
    seed: int,
    *,
    stamp: str = "end",
    jitter_s: float = 0.0,
    usb_period_s: float | None = None,
    pool: Sequence[Frame] | None = None,
) -> FrameBatch:
    """``n`` frames on a wire at ``bitrate`` with ``load`` offered, as a receiver stamps them."""
    rng = np.random.default_rng(seed)
    pool = pool or frame_pool()
    frames = [pool[i] for i in rng.integers(0, len(pool), n)]
    mean_time = float(np.mean([f.bits for f in frames])) / bitrate
    arrivals = np.cumsum(rng.exponential(mean_time / load, n))
    times, free = [], 0.0
    for frame, arrival in zip(frames, arrivals.tolist(), strict=True):
        start = max(arrival, free)
        free = start + frame.bits / bitrate
        times.append(free if stamp == "end" else start)
    stamped = np.array(times) + rng.uniform(-jitter_s, jitter_s, n)
    if usb_period_s is not None:
        # A USB host stamps every frame of a transfer when the transfer completes.
        stamped = np.ceil(stamped / usb_period_s) * usb_period_s + rng.uniform(0, 5e-6, n)
    order = np.argsort(stamped, kind="stable")
    # Written with microsecond resolution, as candump does.
    return to_batch([frames[i] for i in order], np.round(T0 + stamped[order], 6))


def assert_right_or_none(result: BitrateInference, bitrate: int) -> None:
    assert result.bitrate in (None, bitrate), result.reason
    assert result.reason
    if result.bitrate is None:
        assert result.timestamps is None


# --------------------------------------------------------------------------------------------
# The right rate, or None: never a wrong one
# --------------------------------------------------------------------------------------------
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bitrate=st.sampled_from(STANDARD_BITRATES),
    load=st.floats(0.05, 0.9),
    n=st.integers(30, 2500),
    stamp=st.sampled_from(["end", "start"]),
    jitter_s=st.sampled_from([0.0, 1e-6, 5e-6, 20e-6]),
    usb_period_s=st.sampled_from([None, None, 1e-3, 5e-4, 1.25e-4]),
    seed=st.integers(0, 2**32 - 1),
)
def test_never_a_wrong_rate(
    bitrate: int,
    load: float,
    n: int,
    stamp: str,
    jitter_s: float,
    usb_period_s: float | None,
    seed: int,
) -> None:
    batch = capture(
        bitrate, n, load, seed, stamp=stamp, jitter_s=jitter_s, usb_period_s=usb_period_s
    )
    assert_right_or_none(infer_bitrate(batch), bitrate)


@pytest.mark.parametrize("bitrate", STANDARD_BITRATES)
@pytest.mark.parametrize("stamp", ["end", "start"])
def test_dense_precise_traffic_is_inferred(bitrate: int, stamp: str) -> None:
    """Hardware-grade timestamps and a busy bus: every standard rate, both conventions."""
    for seed in range(3):
        result = infer_bitrate(capture(bitrate, 1500, 0.5, seed, stamp=stamp, jitter_s=0.5e-6))
        assert result.bitrate == bitrate, result.reason
        assert result.timestamps == ("frame end" if stamp == "end" else "frame start")
        assert result.evidence_pairs >= MIN_EVIDENCE_PAIRS
        assert result.candidate_bitrate == bitrate
        assert result.lower_bound_bps >= bitrate * 0.95
        assert "inferred from the timestamps" in result.reason


@pytest.mark.parametrize("bitrate", [50_000, 125_000, 250_000, 500_000])
def test_software_timestamps_with_20us_jitter_are_inferred_on_a_busy_bus(bitrate: int) -> None:
    results = [
        infer_bitrate(capture(bitrate, 2000, 0.6, seed, jitter_s=20e-6)) for seed in range(5)
    ]
    for result in results:
        assert_right_or_none(result, bitrate)
    assert sum(r.bitrate == bitrate for r in results) >= 4, [r.reason for r in results]


@pytest.mark.parametrize("bitrate", [125_000, 500_000, 1_000_000])
def test_host_jitter_beyond_the_tolerance_is_none_never_wrong(bitrate: int) -> None:
    rng = np.random.default_rng(9)
    for seed in range(8):
        batch = capture(bitrate, 2000, float(rng.uniform(0.1, 0.9)), seed)
        # Scheduling delays: exponential, 30 µs .. 0.5 ms on average.
        delay = rng.exponential(float(rng.choice([30e-6, 100e-6, 500e-6])), len(batch))
        batch = dataclasses.replace(batch, timestamp=np.sort(batch.timestamp + delay))
        assert_right_or_none(infer_bitrate(batch), bitrate)


def test_usb_transfer_stamps_are_reported_as_bunched() -> None:
    batch = capture(500_000, 3000, 0.6, 1, usb_period_s=1e-3)
    result = infer_bitrate(batch)
    assert result.bitrate is None
    assert "1 ms grid" in result.reason or "bunched" in result.reason


def test_equal_timestamps_are_physically_impossible() -> None:
    batch = capture(250_000, 2000, 0.5, 2)
    repeated = np.repeat(np.arange(len(batch)), 2)  # every frame logged twice (TX echo + RX)
    result = infer_bitrate(batch.take(repeated))
    assert result.bitrate is None
    assert result.equal_timestamps == len(batch)
    assert "closer together than even 1000000 bit/s allows" in result.reason


def test_a_fixed_sending_pace_is_not_taken_for_a_bitrate() -> None:
    # One frame every 1.04 ms: the 125 kbit/s frame time of a 130-bit frame, but on a
    # 500 kbit/s bus nothing was ever back to back.
    pool = frame_pool()
    rng = np.random.default_rng(3)
    frames = [pool[i] for i in rng.integers(0, len(pool), 3000)]
    times = T0 + np.arange(3000) * 1.04e-3 + rng.uniform(-2e-6, 2e-6, 3000)
    result = infer_bitrate(to_batch(frames, np.round(times, 6)))
    assert result.bitrate is None


def test_two_buses_merged_into_one_channel_are_not_inferred() -> None:
    a = capture(125_000, 2000, 0.5, 4)
    b = capture(500_000, 2000, 0.5, 5)
    merged = FrameBatch.concat([a, b])
    merged = merged.take(np.argsort(merged.timestamp, kind="stable"))
    assert infer_bitrate(merged).bitrate is None


def test_sparse_traffic_is_too_sparse() -> None:
    result = infer_bitrate(capture(125_000, 60, 0.05, 6))
    assert result.bitrate is None
    assert "too little dense traffic" in result.reason or "no clear" in result.reason


def test_no_frames_and_a_single_frame() -> None:
    assert infer_bitrate(FrameBatch.empty()).reason.startswith("no frames")
    one = capture(125_000, 1, 0.5, 0)
    assert infer_bitrate(one).reason.startswith("a single classic CAN frame")


# --------------------------------------------------------------------------------------------
# Frames that do not form pairs
# --------------------------------------------------------------------------------------------
def with_flags(batch: FrameBatch, rows: npt.NDArray[Any], flags: int) -> FrameBatch:
    out = dataclasses.replace(batch, flags=batch.flags.copy())
    out.flags[rows] = flags
    return out


def test_can_fd_frames_with_bit_rate_switch_dominating_say_so() -> None:
    batch = capture(500_000, 2000, 0.5, 7, jitter_s=0.5e-6)
    two_in_three = np.arange(len(batch)) % 3 != 0
    result = infer_bitrate(with_flags(batch, two_in_three, FLAG_FD | FLAG_BRS))
    assert result.bitrate is None
    assert "bit-rate switch" in result.reason and "unknown data bitrate" in result.reason
    assert result.fd_brs_frames > result.frames


def test_error_frames_are_skipped_and_keep_the_bound() -> None:
    batch = capture(250_000, 2000, 0.5, 8, jitter_s=0.5e-6)
    # Error frames stamped anywhere (even on top of data frames) are not frames on the wire.
    errors = with_flags(capture(250_000, 300, 0.5, 9), np.arange(300), FLAG_ERROR)
    mixed = FrameBatch.concat([batch, errors])
    mixed = mixed.take(np.argsort(mixed.timestamp, kind="stable"))
    assert infer_bitrate(mixed).bitrate == 250_000
    assert infer_bitrate(mixed).frames == len(batch)


# --------------------------------------------------------------------------------------------
# Streaming: chunks and channels
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cut", [1, 7, 333, 999])
def test_chunks_give_the_one_shot_result(cut: int) -> None:
    batch = capture(125_000, 1000 if cut > 1 else 200, 0.5, 10, jitter_s=5e-6)
    evidence = BitrateEvidence()
    for start in range(0, len(batch), cut):
        evidence.update(batch.take(slice(start, start + cut)))
    assert evidence.result() == infer_bitrate(batch)


def test_channels_are_inferred_apart_by_name() -> None:
    slow = capture(125_000, 1500, 0.5, 11, jitter_s=0.5e-6)
    fast = capture(500_000, 1500, 0.5, 12, jitter_s=0.5e-6)
    fast = dataclasses.replace(fast, channel=np.ones(len(fast), np.int16), channels=["x", "can1"])
    both = FrameBatch.concat([slow, fast])
    both = both.take(np.argsort(both.timestamp, kind="stable"))
    evidence = BitrateEvidence()
    half = len(both) // 2
    evidence.update(both.take(slice(0, half)))
    # A later chunk with another channel table: names, not indices, tell channels apart.
    rest = both.take(slice(half, None))
    names = np.array([rest.channels[c] for c in rest.channel])
    renamed = dataclasses.replace(
        rest, channel=np.where(names == "can1", 0, 1).astype(np.int16), channels=["can1", "can0"]
    )
    evidence.update(renamed)
    results = evidence.results()
    assert results["can0"].bitrate == 125_000 and results["can1"].bitrate == 500_000
    assert evidence.channels == ["can0", "can1"]
    with pytest.raises(ValueError, match="name the channel"):
        evidence.result()
    assert evidence.result("can1").channel == "can1"
    assert evidence.result("nowhere").bitrate is None


def test_unsorted_frames_within_a_chunk_are_sorted() -> None:
    batch = capture(250_000, 1500, 0.5, 13, jitter_s=0.5e-6)
    shuffled = batch.take(np.random.default_rng(0).permutation(len(batch)))
    assert infer_bitrate(shuffled) == infer_bitrate(batch)


# --------------------------------------------------------------------------------------------
# Choosing the bitrate an analysis uses
# --------------------------------------------------------------------------------------------
def test_choose_bitrate_order_and_assumption() -> None:
    inferred = infer_bitrate(capture(250_000, 1500, 0.5, 14, jitter_s=0.5e-6))
    assert inferred.bitrate == 250_000
    choice = choose_bitrate(flag=500_000, recorded=125_000, config=125_000, inference=inferred)
    assert (choice.bitrate, choice.source, choice.known) == (500_000, "flag", True)
    assert len(choice.notes) == 3  # the recording, the config and the timestamps disagree
    assert any("timestamps suggest 250000 bit/s" in note for note in choice.notes)
    assert choose_bitrate(recorded=125_000, config=500_000).source == "recording"
    assert choose_bitrate(config=500_000, inference=inferred).source == "config"
    by_inference = choose_bitrate(inference=inferred)
    assert (by_inference.bitrate, by_inference.source) == (250_000, "inferred")
    assert by_inference.detail == inferred.reason

    none = infer_bitrate(capture(250_000, 40, 0.05, 15))
    assumed = choose_bitrate(inference=none)
    assert (assumed.bitrate, assumed.source, assumed.known) == (DEFAULT_BITRATE, "assumed", False)
    assert "assumed" in assumed.detail and none.reason in assumed.detail
    assert choose_bitrate().bitrate == DEFAULT_BITRATE


def test_standard_rates_and_default() -> None:
    assert list(STANDARD_BITRATES) == sorted(STANDARD_BITRATES)
    assert DEFAULT_BITRATE == 125_000 and DEFAULT_BITRATE in STANDARD_BITRATES


def test_one_default_across_commands() -> None:
    import argparse

    from candiag.cli.monitor import adapter_config
    from candiag.config.model import BusConfig
    from candiag.errors import BusUnavailableError
    from candiag.sim.charger import SimConfig
    from candiag.sim.runner import open_sim_bus

    assert BusConfig("b", "socketcan", "can0").bitrate == DEFAULT_BITRATE
    assert SimConfig().bitrate == DEFAULT_BITRATE
    args = argparse.Namespace(
        interface="pcan",
        channel="PCAN_USBBUS1",
        bitrate=None,
        data_bitrate=None,
        fd=False,
        dbc=None,
    )
    assert adapter_config(args).buses[0].bitrate == DEFAULT_BITRATE
    with pytest.raises(BusUnavailableError, match=f"bitrate {DEFAULT_BITRATE}'"):
        open_sim_bus("no-such-interface", "can0")


@pytest.mark.slow
def test_bench_runs_and_infers(capsys: pytest.CaptureFixture[str]) -> None:
    """Smoke run of ``bench/bench_bitrate.py`` (no timing asserted: that is ``make bench``)."""
    import importlib
    import sys
    from pathlib import Path

    repo = str(Path(__file__).resolve().parent.parent)
    if repo not in sys.path:
        sys.path.insert(0, repo)  # bench/ is a top-level package of the repository
    bench = importlib.import_module("bench.bench_bitrate")
    assert bench.main(["--quick", "--frames", "30000"]) == 0
    out = capsys.readouterr().out
    assert "BitrateEvidence.update, one batch" in out
    assert "inferred: 1000000 (inferred from the timestamps" in out
