"""Issue 15, nodes group: bus silence, intermittent and duplicate nodes, firmware and cycle
violations as interval rules over hand-made timelines, and the trackers that record them."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest

from candiag.decode.dbc import ChargerDatabase, load_reference_database
from candiag.diagnosis.engine import load_rulebook
from candiag.diagnosis.episodes import Episode
from candiag.diagnosis.intervalrule import IntervalFinding
from candiag.diagnosis.intervals import INTERVAL_CODES
from candiag.diagnosis.noderules import CODES, node_rules
from candiag.diagnosis.timeline import BusTimeline, CycleSpan, NodePresence, bus_timeline
from candiag.health.cycles import CycleBreak
from candiag.health.ids import IdStats
from candiag.health.nodes import INTERMITTENT_MEMORY_S, FamilyPolicy, NodeTracker
from candiag.health.pipeline import BusPipeline
from candiag.ingest.frames import FrameBatch
from tests.test_health_nodes import encode, telemetry, track

BOOK = load_rulebook()
V14 = "DCDC_Major=1 DCDC_Minor=4 PFC_Major=2 PFC_Minor=0"
V13 = "DCDC_Major=1 DCDC_Minor=3 PFC_Major=2 PFC_Minor=0"


@pytest.fixture(scope="module")
def db() -> ChargerDatabase:
    return load_reference_database()


def node(address: int, first: float, last: float, gaps=(), **more) -> NodePresence:  # type: ignore[no-untyped-def]
    return NodePresence("power_module", address, first, last, 1.0, tuple(gaps), **more)


def timeline(*nodes: NodePresence, end: float = 1000.0, **more) -> BusTimeline:  # type: ignore[no-untyped-def]
    return BusTimeline("can0", 0.0, end, tuple(nodes), bitrate=250_000, bitrate_known=True, **more)


def found(tl: BusTimeline) -> dict[tuple[str, str], IntervalFinding]:
    return {(f.code, f.subject): f for f in node_rules(BOOK, tl)}


def test_the_codes_are_registered_as_interval_codes() -> None:
    assert CODES <= INTERVAL_CODES


# -- bus-wide silence -------------------------------------------------------------------------


def test_every_node_silent_at_once_is_one_bus_silence_from_the_last_frame_to_the_first() -> None:
    tl = timeline(
        node(1, 0.0, 999.0, [(300.05, 310.02)]),
        node(2, 0.0, 999.0, [(300.01, 310.07)]),
        node(3, 0.0, 999.0, [(299.98, 310.04), (500.0, 520.0)]),
    )
    got = found(tl)
    silent = got[("CAN_BUS_SILENT", "can0")]
    assert silent.episodes == (Episode(300.05, 310.02),)
    assert silent.evidence == {"nodes": 3, "last_frame": 300.05}
    assert "250,000" in silent.fields["bus_bitrate"]
    # The one node's own dropout at 500 s is not the bus's.
    assert [k for k in got if k[0] == "CAN_BUS_SILENT"] == [("CAN_BUS_SILENT", "can0")]


def test_silences_that_only_touch_are_no_bus_silence() -> None:
    """Node 1 back at 301 s, node 2 silent from 300.5 s: both silent 0.5 s, never both for
    their timeout (the instant rule would never have seen every node offline)."""
    tl = timeline(node(1, 0.0, 999.0, [(290.0, 301.0)]), node(2, 0.0, 999.0, [(300.5, 320.0)]))
    assert ("CAN_BUS_SILENT", "can0") not in found(tl)


def test_a_silence_that_never_ends_is_open_and_one_node_alone_is_no_bus() -> None:
    tl = timeline(node(1, 0.0, 900.0), node(2, 0.0, 900.2))
    assert found(tl)[("CAN_BUS_SILENT", "can0")].episodes == (Episode(900.2, None),)
    assert ("CAN_BUS_SILENT", "can0") not in found(timeline(node(1, 0.0, 900.0)))


def test_a_node_not_yet_heard_does_not_break_the_silence_nor_make_one() -> None:
    """Node 2 first heard at 400 s: before that, node 1's dropout is not a bus silence."""
    tl = timeline(
        node(1, 0.0, 999.0, [(100.0, 110.0), (500.0, 510.0)]),
        node(2, 400.0, 999.0, [(499.9, 510.1)]),
    )
    assert found(tl)[("CAN_BUS_SILENT", "can0")].episodes == (Episode(500.0, 510.0),)


def test_bus_off_explains_the_silence() -> None:
    gaps = [(300.0, 304.0)]
    states = {"bus_off": ((300.1, 303.9),)}
    tl = timeline(node(1, 0.0, 999.0, gaps), node(2, 0.0, 999.0, gaps), states=states)
    assert ("CAN_BUS_SILENT", "can0") not in found(tl)


# -- intermittent -----------------------------------------------------------------------------


def test_a_node_is_intermittent_from_its_return_for_the_memory_then_clears() -> None:
    tl = timeline(node(1, 0.0, 1999.0, [(100.0, 105.0)]), node(2, 0.0, 1999.0), end=2000.0)
    f = found(tl)[("CAN_NODE_INTERMITTENT", "can0/power_module/1")]
    assert f.episodes == (Episode(105.0, 105.0 + INTERMITTENT_MEMORY_S),)
    assert f.fields["dropouts"] == 1 and f.evidence["longest_gap_s"] == 5.0


def test_intermittent_pauses_while_offline_and_is_open_at_the_end() -> None:
    gaps = [(100.0, 105.0), (300.0, 320.0)]
    tl = timeline(node(1, 0.0, 899.0, gaps), node(2, 0.0, 899.0), end=900.0)
    f = found(tl)[("CAN_NODE_INTERMITTENT", "can0/power_module/1")]
    assert f.episodes == (Episode(105.0, 300.0), Episode(320.0, None))
    assert f.fields["dropouts"] == 2


def test_most_nodes_returning_together_is_a_bus_event_not_each_nodes_dropout() -> None:
    together = [(100.0, 103.0)]
    nodes = [node(a, 0.0, 999.0, together if a != 4 else []) for a in range(1, 5)]
    nodes[0] = node(1, 0.0, 999.0, [(50.0, 52.0), *together])
    got = found(timeline(*nodes))
    (only,) = [f for k, f in got.items() if k[0] == "CAN_NODE_INTERMITTENT"]
    # Node 1's own dropout at 50 s counts; the bus-wide one at 100 s does not.
    assert only.subject == "can0/power_module/1" and only.fields["dropouts"] == 1
    assert only.episodes == (Episode(52.0, 100.0), Episode(103.0, 652.0))
    assert only.evidence["bus_wide_dropouts"] == 1


# -- duplicate --------------------------------------------------------------------------------


def test_duplicate_stretches_by_rate_and_by_alarm_bit_are_one_finding() -> None:
    n = node(
        2,
        0.0,
        999.0,
        [(150.0, 160.0)],
        duplicates=((100.0, 120.0, 1.98), (155.0, None, 2.01)),
        alarm_duplicates=((119.0, 125.0),),
    )
    f = found(timeline(n, node(1, 0.0, 999.0)))[("CAN_NODE_DUPLICATE", "can0/power_module/2")]
    # Minus the node's silence from 150 to 160 s: no evidence of two senders while silent.
    assert f.episodes == (Episode(100.0, 125.0), Episode(160.0, None))
    assert f.fields["rate_ratio"] == 2.01 and f.evidence["alarm"] is True


# -- firmware ---------------------------------------------------------------------------------


def test_firmware_mismatch_from_the_outliers_first_frame_to_its_update() -> None:
    nodes = [
        node(1, 0.0, 999.0, firmware={"ModuleVersion": ((0.5, V14),)}),
        node(2, 0.0, 999.0, firmware={"ModuleVersion": ((0.6, V14),)}),
        node(5, 0.0, 999.0, firmware={"ModuleVersion": ((0.7, V13), (400.2, V14))}),
    ]
    f = found(timeline(*nodes))[("CAN_FW_MISMATCH", "can0/power_module")]
    assert f.episodes == (Episode(0.7, 400.2),)
    assert f.fields["outliers"] == "power module 5" and f.fields["majority"] == V14
    assert f.evidence["by_version"] == {V13: [5], V14: [1, 2]}


def test_firmware_not_allowed_names_the_allowed_list_and_is_open_while_it_runs() -> None:
    nodes = [
        node(1, 0.0, 999.0, firmware={"ModuleVersion": ((0.5, V14),)}),
        node(2, 0.0, 999.0, firmware={"ModuleVersion": ((0.6, V14), (300.0, V13))}),
    ]
    got = found(timeline(*nodes, allowed_firmware={"power_module": frozenset({V14})}))
    f = got[("CAN_FW_NOT_ALLOWED", "can0/power_module/2")]
    assert f.episodes == (Episode(300.0, None),)
    assert f.fields["allowed"] == V14 and f.fields["version"] == V13
    assert got[("CAN_FW_MISMATCH", "can0/power_module")].episodes == (Episode(300.0, None),)
    assert ("CAN_FW_NOT_ALLOWED", "can0/power_module/1") not in got


# -- cycle violations -------------------------------------------------------------------------


def span(ident: str, start: float, end: float, node_address: int | None = 3) -> CycleSpan:
    stretch = CycleBreak(0, start, end, 500, 0.12, 0.05, end - 0.1)
    return CycleSpan(ident, "ModuleTelemetry", "power_module", node_address, 100, stretch)


def test_cycle_violations_are_merged_and_cut_where_their_node_was_offline() -> None:
    breaks = (
        span("0x0283F003", 120.0, 200.0),
        span("0x0283F003", 190.0, 240.0),  # overlapping stretches are one episode
        span("0x0283F003", 310.0, 320.0),  # the step of node 3's dropout: explained
        span("0x0283F003", 400.0, 480.0),  # jitter with a dropout inside: the rest stays
        span("0x0283F003", 960.0, 1010.0),  # still going on at the end
    )
    n3 = node(3, 0.0, 999.0, [(310.5, 316.0), (441.0, 443.0)])
    got = found(timeline(n3, node(1, 0.0, 999.0), cycle_breaks=breaks))
    f = got[("CAN_CYCLE_VIOLATION", "can0/0x0283F003")]
    assert f.episodes == (
        Episode(120.0, 240.0),
        Episode(400.0, 440.0),
        Episode(450.0, 480.0),
        Episode(960.0, None),
    )
    assert f.fields["id"] == "ModuleTelemetry"
    assert (f.evidence["family"], f.evidence["node"], f.evidence["stretches"]) == (
        "power_module",
        3,
        4,
    )


def test_cycle_violations_are_suppressed_by_a_duplicate_a_bus_off_or_a_bus_silence() -> None:
    n3 = node(3, 0.0, 999.0, duplicates=((131.0, 150.0, 2.0),))
    tl = timeline(
        n3,
        node(1, 0.0, 999.0, [(599.0, 610.0)]),
        node(4, 0.0, 999.0, [(599.5, 610.5)]),
        states={"bus_off": ((420.0, 423.0),)},
        cycle_breaks=(
            span("0x0283F003", 130.0, 160.0),
            span("0x0283F001", 420.0, 430.0, 1),
            span("0x0283F004", 600.0, 620.0, 4),
        ),
    )
    got = found(tl)
    assert not [k for k in got if k[0] == "CAN_CYCLE_VIOLATION"], got.keys()


# -- what the trackers record, whatever the batches ----------------------------------------


def split(batch: FrameBatch, cuts: Sequence[float]) -> list[FrameBatch]:
    edges = [0, *np.searchsorted(batch.timestamp, cuts).tolist(), len(batch)]
    return [batch.take(slice(a, b)) for a, b in itertools.pairwise(edges)]


@pytest.mark.parametrize("cuts", [[], [2.37], [1.0, 2.05, 2.5, 3.33, 5.2, 7.9]])
def test_duplicate_stretch_bounds_are_the_second_senders_frames(db: ChargerDatabase, cuts) -> None:  # type: ignore[no-untyped-def]
    tracker = NodeTracker(db)
    frames = telemetry([1, 2], 0.0, 12.0) + telemetry([2], 2.02, 6.0, offset=0.0)
    for part in split(encode(db, frames), cuts):
        track(db, part, tracker)
    n2 = tracker.nodes[("power_module", 2)]
    ((start, end, peak),) = n2.duplicates
    assert start == pytest.approx(2.02, abs=0.1) and end == pytest.approx(5.92, abs=0.1)
    assert peak == pytest.approx(2.0, rel=0.1) and n2.duplicate_open is None
    assert tracker.nodes[("power_module", 1)].duplicates == []


def test_duplicate_alarm_bit_and_firmware_changes_exact_to_the_frames(db: ChargerDatabase) -> None:
    tracker = NodeTracker(db)
    v14 = {"DCDC_Major": 1, "DCDC_Minor": 4, "PFC_Major": 2, "PFC_Minor": 0}
    frames = [
        *[(0.1 * k + 0.01, "ModuleStatus", 5, {"id_repeat_alarm": int(3.0 <= 0.1 * k < 4.5)})
          for k in range(80)],
        *[(float(k) + 0.5, "ModuleVersion", 5, {**v14, "DCDC_Minor": 4 if k < 5 else 3})
          for k in range(8)],
    ]  # fmt: skip
    for part in split(encode(db, frames), [2.0, 3.05, 4.4, 6.0]):
        track(db, part, tracker)
    n5 = tracker.nodes[("power_module", 5)]
    (a, b), *_ = n5.alarm_duplicates
    assert a == pytest.approx(3.01) and b == pytest.approx(4.51)
    assert n5.firmware_changes == {"ModuleVersion": [(0.5, V14), (5.5, V13)]}


def pipeline_breaks(
    db: ChargerDatabase, batch: FrameBatch, cuts: Sequence[float]
) -> list[CycleBreak]:
    pipe = BusPipeline("can0", db)
    for part in split(batch, cuts):
        pipe.process(part)
    return pipe.cycle_breaks()


def test_cycle_steps_are_fixed_in_time_so_any_batching_judges_alike(db: ChargerDatabase) -> None:
    rng = np.random.default_rng(5)
    frames = telemetry([1], 0.0, 200.0)
    # Node 1 jitters between 70 s and 110 s: periods from 10 ms to 190 ms.
    jittered = [
        (t + (rng.uniform(-0.09, 0.09) if 70.0 <= t < 110.0 else 0.0), *rest) for t, *rest in frames
    ]
    batch = encode(db, jittered)  # type: ignore[arg-type]
    one = pipeline_breaks(db, batch, [])
    many = pipeline_breaks(db, batch, np.arange(0.25, 200.0, 0.25).tolist())
    assert [(b.key, b.start, b.end, b.count) for b in one] == [
        (b.key, b.start, b.end, b.count) for b in many
    ]
    assert [b.jitter_s for b in one] == pytest.approx([b.jitter_s for b in many])
    # Judged over the last minute every 10 s; bounded by the steps that held late periods.
    assert {(b.start, b.end) for b in one} == {(70.0, 110.0)}


def test_pipeline_timeline_carries_the_nodes_group_evidence(db: ChargerDatabase) -> None:
    pipe = BusPipeline(
        "can0",
        db,
        policies=[FamilyPolicy("power_module", allowed_firmware=frozenset({V14}))],
        bitrate_known=False,
    )
    frames = telemetry([1, 2], 0.0, 10.0) + telemetry([2], 3.0, 6.0, offset=0.04)
    pipe.process(encode(db, frames))
    tl = bus_timeline(pipe)
    (n2,) = [n for n in tl.nodes if n.address == 2]
    assert n2.duplicates and n2.duplicates[0][1] is not None
    assert tl.allowed_firmware == {"power_module": frozenset({V14})}
    assert not tl.bitrate_known
    f = found(replace(tl, end=10.0))[("CAN_NODE_DUPLICATE", "can0/power_module/2")]
    assert f.fields["bitrate"] == "unknown"


@pytest.mark.parametrize("seed", range(6))
def test_the_sliding_minute_judges_as_the_epoch_verdict_does(
    db: ChargerDatabase, seed: int
) -> None:
    """Every 10 s the minute ending there (here all from the first frame at 60 s) is judged
    with sums per step and the 95th percentile by counting the periods within p95_factor x
    the cycle: it breaks exactly the ids the epoch's histogram verdict breaks over the same
    frames.  Amplitudes around the threshold."""
    rng = np.random.default_rng(seed)
    amplitude = 0.02 + 0.015 * seed  # up to 0.095 s on a 0.1 s cycle
    frames = telemetry([1, 2], 60.0, 120.0)
    moved = [
        (min(119.999, t + (rng.uniform(-amplitude, amplitude) if n == 2 else 0.0)), m, n, v)
        for t, m, n, v in frames
    ]
    batch = encode(db, moved)
    pipe = BusPipeline("can0", db)
    pipe.process(batch)
    epoch = set()
    for end in range(70, 130, 10):
        stats = IdStats()
        stats.update(batch.take(batch.timestamp < end))
        declared = np.where((stats.keys & 0x1FFFFFFF) >> 12 == 0x283F, 0.1, 0.0)
        verdicts = stats.cycle_verdicts(declared)
        epoch |= {int(k) for k, v in zip(stats.keys, verdicts, strict=True) if v == 0}
    assert {b.key for b in pipe.cycle_breaks()} == epoch


def test_a_cycle_fault_that_comes_back_is_two_stretches(db: ChargerDatabase) -> None:
    rng = np.random.default_rng(1)
    frames = telemetry([1], 0.0, 400.0)
    moved = [
        (t + (rng.uniform(-0.09, 0.09) if 70 <= t < 90 or 250 <= t < 270 else 0.0), m, n, v)
        for t, m, n, v in frames
    ]
    pipe = BusPipeline("can0", db)
    for part in split(encode(db, moved), np.arange(1.0, 400.0, 1.0).tolist()):
        pipe.process(part)
    assert [(b.start, b.end) for b in pipe.cycle_breaks()] == [(70.0, 90.0), (250.0, 270.0)]
