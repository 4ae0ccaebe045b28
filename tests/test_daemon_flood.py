"""A flood of random 29-bit identifiers: every per-identifier structure stays bounded.

Issue 13 §1 item 14: at ~28k random-id frames/s the daemon grew by 112 MB a minute.
tracemalloc put it in ``BusPipeline.unknown_ids`` (a Counter with one entry per id ever
seen); the declared-cycle memo grew by up to 4096 ids per minute.  These tests feed a
:class:`LiveBus` the way the daemon does (batches, ``advance``, a report per second) and
assert sizes and exact totals; the RSS figure comes from ``make soak`` (random-id phase).
"""

from __future__ import annotations

import numpy as np
import pytest

from candiag.config.check import bus_database
from candiag.config.load import parse_config_text
from candiag.health.ids import DEFAULT_MAX_IDS
from candiag.health.pipeline import MAX_CYCLE_MEMO
from candiag.ingest.frames import FLAG_EXTENDED, FrameBatch
from candiag.live.bus import LiveBus
from candiag.metrics.snapshot import MAX_IDS_PER_BUS

START = 1_700_000_000.0


def random_ids(rng: np.random.Generator, t0: float, seconds: float, n: int) -> FrameBatch:
    """``n`` extended data frames with random 29-bit ids over ``seconds``, 8 random bytes."""
    return FrameBatch(
        timestamp=t0 + np.sort(rng.random(n)) * seconds,
        can_id=rng.integers(0, 1 << 29, n, dtype=np.uint32),
        flags=np.full(n, FLAG_EXTENDED, np.uint8),
        dlc=np.full(n, 8, np.uint8),
        data=rng.integers(0, 256, (n, 8), dtype=np.uint8),
        channel=np.zeros(n, np.int16),
        channels=["flood"],
    )


@pytest.fixture
def monitor() -> LiveBus:
    config = parse_config_text(
        '[[can.buses]]\nname = "flood"\ninterface = "virtual"\nchannel = "flood"\n'
        '[[can.buses.families]]\nname = "power_module"\nexpected = ["1-8"]\n'
    )
    bus = config.buses[0]
    mon = LiveBus(bus, bus_database(bus))
    mon.set_link(True, START)
    return mon


def feed(mon: LiveBus, rng: np.random.Generator, t: float, seconds: float, fps: int) -> float:
    """Quarter-second batches at ``fps`` like the daemon's loop, a report every second."""
    step = 0.25
    for k in range(int(seconds / step)):
        mon.process(random_ids(rng, t, step, int(fps * step)))
        t += step
        mon.advance(t, t - 0.1)
        if k % 4 == 3:
            mon.report(t)
    return t


def test_random_ids_leave_every_per_id_structure_bounded(monitor: LiveBus) -> None:
    rng = np.random.default_rng(14)
    end = feed(monitor, rng, START, 3.0, 28_000)  # 84,000 frames, about as many ids
    frames = 84_000
    pipeline = monitor.pipeline
    assert monitor.frames["data"] == frames

    # Unknown ids: capped, the total still exact.
    assert len(pipeline.unknown_ids) == DEFAULT_MAX_IDS
    decoded = pipeline.decoded_frames
    assert pipeline.unknown_ids.total() == frames - decoded
    assert pipeline.unknown_ids.untracked > frames // 2
    report = monitor.report(end)
    assert report.decode is not None
    assert report.decode.unknown_frames == frames - decoded
    assert report.decode.untracked_frames == pipeline.unknown_ids.untracked
    assert len(report.decode.unknown_ids) == 10

    # Per-id metrics series, id statistics and the cycle memo: capped as well.
    assert len(monitor.ids) == MAX_IDS_PER_BUS
    assert sum(monitor.ids.labelled("overflow").values()) == frames
    lifetime = pipeline.ids
    assert len(lifetime) <= DEFAULT_MAX_IDS
    assert lifetime.overflow_frames + sum(r.count for r in lifetime.rows()) == frames
    assert len(pipeline._cycles) <= MAX_CYCLE_MEMO
    # Nodes exist only where an id carries a family's address bits (8 bits here).
    assert len(pipeline.nodes.nodes) <= 8 + 256


def test_new_random_ids_every_minute_do_not_grow_the_cycle_memo(
    monitor: LiveBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each one-minute id epoch admits 4096 new ids; the declared-cycle memo stays capped."""
    cap = DEFAULT_MAX_IDS + 1000  # two epochs overflow it (the shipped cap needs five)
    monkeypatch.setattr("candiag.health.pipeline.MAX_CYCLE_MEMO", cap)
    assert cap < MAX_CYCLE_MEMO
    rng = np.random.default_rng(15)
    t = START
    sizes = []
    for _ in range(3):
        monitor.process(random_ids(rng, t, 61.0, DEFAULT_MAX_IDS + 500))
        t += 61.0
        monitor.advance(t, t - 0.1)
        monitor.report(t)
        sizes.append(len(monitor.pipeline._cycles))
    assert max(sizes) <= cap, sizes
    assert len(monitor.pipeline.unknown_ids) == DEFAULT_MAX_IDS
