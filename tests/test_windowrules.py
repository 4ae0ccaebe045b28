"""The window rules (error classes, load, dropped frames, TEC rising) on hand-made timelines,
and end to end: a burst late in a long capture, between the 10-s grid's points."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import can
import numpy as np
import pytest

from candiag.cli import main
from candiag.config.model import BusConfig
from candiag.decode.dbc import load_reference_database
from candiag.diagnosis.engine import DiagnosisEngine, RuleBook, load_rulebook
from candiag.diagnosis.episodes import Episode
from candiag.diagnosis.intervalrule import IntervalFinding
from candiag.diagnosis.intervals import INTERVAL_CODES
from candiag.diagnosis.timeline import BusTimeline, bus_timeline
from candiag.diagnosis.windowrules import WINDOW_CODES, rising_intervals, window_rules
from candiag.health.busstate import BusStateTracker
from candiag.health.windows import BusWindows
from candiag.ingest.frames import FrameBatch
from candiag.live.bus import LiveBus
from candiag.sim.faults import controller_payload, error_frame_batch
from candiag.socketcan_errors import CAN_ERR_CNT, CAN_ERR_CRTL, CAN_ERR_PROT
from tests.frame_batches import batch_of
from tests.realworld import HOW, pycan_dir

BOOK = load_rulebook()
SPAN = 600  # seconds of traffic in the hand-made timelines


def timeline(
    *,
    end: float = SPAN,
    bitrate: int | None = 250_000,
    load: float | dict[int, float] = 0.3,
    **columns: dict[int, int],
) -> BusTimeline:
    """A bus with frames every second of [0, SPAN) and the given per-second columns."""
    seconds = np.arange(SPAN, dtype=np.int64)
    cols = {}
    for name, values in columns.items():
        column = np.zeros(SPAN, np.int64)
        for second, n in values.items():
            column[second] = n
        cols[name] = column
    errors = [v for k, v in cols.items() if k.startswith("errors_") and k != "errors_bus_error"]
    cols["frames_error"] = np.sum(errors, axis=0) if errors else np.zeros(SPAN, np.int64)
    ratio = np.full(SPAN, load if isinstance(load, float) else 0.3)
    if isinstance(load, dict):
        for second, value in load.items():
            ratio[second] = value
    return BusTimeline(
        "can0", 0.0, end, seconds=seconds, columns=cols, load_ratio=ratio, bitrate=bitrate
    )


def burst(first: int, last: int, n: int) -> dict[int, int]:
    return dict.fromkeys(range(first, last + 1), n)


def found(tl: BusTimeline, book: RuleBook = BOOK) -> dict[str, IntervalFinding]:
    out = {f.code: f for f in window_rules(book, tl)}
    assert set(out) <= WINDOW_CODES
    return out


def spans(f: IntervalFinding) -> list[tuple[float, float | None]]:
    return [(e.start, e.end) for e in f.episodes]


def test_the_window_codes_are_interval_codes() -> None:
    assert WINDOW_CODES <= INTERVAL_CODES


def test_an_ack_burst_is_bounded_by_its_first_and_last_second() -> None:
    got = found(timeline(errors_ack=burst(253, 258, 30)))
    assert set(got) == {"CAN_ERR_ACK"}
    ack = got["CAN_ERR_ACK"]
    assert spans(ack) == [(253.0, 259.0)]
    assert ack.evidence["episode_error_frames"] == 180
    assert ack.evidence["error_frames_60s"] == 180 and ack.evidence["worst_second"] == 258.0


def test_evidence_less_than_a_window_apart_is_one_episode_more_is_two() -> None:
    close = found(timeline(errors_ack={100: 3, 140: 3}))["CAN_ERR_ACK"]
    assert spans(close) == [(100.0, 141.0)]
    apart = found(timeline(errors_ack={100: 3, 161: 3}))["CAN_ERR_ACK"]
    assert spans(apart) == [(100.0, 101.0), (161.0, 162.0)]


def test_an_episode_stays_open_until_its_evidence_is_absent_for_clear_after_s() -> None:
    near_end = SPAN - int(BOOK.clear_after_s) + 5
    assert spans(found(timeline(errors_ack={near_end: 2}))["CAN_ERR_ACK"]) == [(near_end, None)]
    earlier = SPAN - int(BOOK.clear_after_s) - 5
    assert spans(found(timeline(errors_ack={earlier: 2}))["CAN_ERR_ACK"]) == [
        (earlier, earlier + 1.0)
    ]


def test_ack_versus_protocol_errors_keep_the_instant_rules_precedence() -> None:
    more_ack = found(timeline(errors_ack=burst(200, 204, 5), errors_protocol=burst(200, 204, 3)))
    assert set(more_ack) == {"CAN_ERR_ACK"}
    more_protocol = found(
        timeline(errors_ack=burst(200, 204, 1), errors_protocol=burst(200, 204, 3))
    )
    assert set(more_protocol) == {"CAN_ERR_PHY"}
    assert spans(more_protocol["CAN_ERR_PHY"]) == [(200.0, 205.0)]


def test_bit0_errors_and_transceiver_errors_are_trx() -> None:
    bit0 = burst(300, 302, 4)
    got = found(timeline(errors_protocol=bit0, protocol_bit0=bit0))
    # Protocol errors that are all bit0 errors: the transceiver, not the physical layer.
    assert set(got) == {"CAN_ERR_TRX"}
    assert spans(got["CAN_ERR_TRX"]) == [(300.0, 303.0)]
    assert got["CAN_ERR_TRX"].evidence["protocol_type_60s"] == {"bit0": 12}
    assert set(found(timeline(errors_transceiver={310: 1}))) == {"CAN_ERR_TRX"}


def test_bursts_of_protocol_errors_are_a_wrong_bitrate_from_the_first_burst() -> None:
    # The first burst alone is a physical-layer verdict; the second proves a wrong bitrate,
    # whose episode then starts at the first burst, with no physical-layer episode.
    got = found(timeline(errors_protocol={400: 16, 405: 16, 410: 16}))
    assert set(got) == {"CAN_WRONG_BITRATE"}
    wrong = got["CAN_WRONG_BITRATE"]
    assert spans(wrong) == [(400.0, 411.0)]
    assert wrong.evidence["burst_seconds_60s"] == 3 and wrong.evidence["share_in_bursts"] == 1.0
    assert "bus bitrate (250,000 bit/s)" in wrong.fields["bus_bitrate"]
    scattered = found(timeline(errors_protocol={400: 2, 405: 1, 410: 3}))
    assert set(scattered) == {"CAN_ERR_PHY"}


def test_too_few_error_frames_for_the_threshold_give_no_finding() -> None:
    book = dataclasses.replace(BOOK, thresholds={**BOOK.thresholds, "error_frames_warning_60s": 10})
    assert found(timeline(errors_ack=burst(200, 202, 3)), book) == {}
    assert set(found(timeline(errors_ack=burst(200, 203, 3)), book)) == {"CAN_ERR_ACK"}


def test_unclassified_error_frames_are_counted_over_their_episodes() -> None:
    got = found(timeline(errors_unclassified={50: 2, 90: 1, 500: 4}))
    unclassified = got["CAN_ERROR_FRAMES_UNCLASSIFIED"]
    assert spans(unclassified) == [(50.0, 91.0), (500.0, 501.0)]
    assert unclassified.fields["count"] == 7


def test_a_load_burst_between_grid_points_is_bounded_to_the_second() -> None:
    got = found(timeline(load=dict.fromkeys(range(317, 329), 0.93)))
    assert set(got) == {"CAN_LOAD_HIGH"}
    assert spans(got["CAN_LOAD_HIGH"]) == [(317.0, 329.0)]
    assert got["CAN_LOAD_HIGH"].fields["load"] == "93%"


def test_a_one_second_load_spike_is_not_a_high_load() -> None:
    assert found(timeline(load={317: 0.95})) == {}


def test_no_load_finding_under_an_assumed_bitrate() -> None:
    assert found(timeline(bitrate=None, load=dict.fromkeys(range(300, 330), 0.95))) == {}


def test_dropped_frames_are_episodes_with_their_count() -> None:
    got = found(timeline(frames_dropped={120: 5, 130: 2}))["CAN_FRAMES_DROPPED"]
    assert spans(got) == [(120.0, 131.0)]
    assert got.fields["dropped"] == 7 and got.evidence["dropped_recent"] == 7


def test_a_healthy_timeline_gives_nothing() -> None:
    assert found(timeline()) == {}
    assert found(BusTimeline("can0", None, None)) == {}


# -- counters rising ---------------------------------------------------------------------------


def test_rising_only_while_the_counters_rise() -> None:
    assert rising_intervals([(10.0, 50.0)], []) == [Episode(10.0, 50.0)]
    assert rising_intervals([(10.0, 50.0)], [(30.0, True)]) == [Episode(10.0, 30.0)]
    assert rising_intervals([(10.0, 50.0)], [(30.0, True), (40.0, False)]) == [
        Episode(10.0, 30.0),
        Episode(40.0, 50.0),
    ]
    # Entered on the way down from error-passive: recovery, not errors building up.
    assert rising_intervals([(10.0, 50.0)], [(10.0, True)]) == []
    assert rising_intervals([(10.0, None)], [(5.0, False)]) == [Episode(10.0, None)]


def _counter_frame(t: float, state: str, tec: int) -> Any:
    return error_frame_batch(
        np.array([t]),
        CAN_ERR_CRTL | CAN_ERR_CNT,
        controller_payload(state, tec, 0)[None, :],
        "can0",
    )


def test_the_state_tracker_records_each_change_of_direction_at_its_frame() -> None:
    tracker = BusStateTracker()
    for t, state, tec in (
        (1.0, "warning", 100),
        (2.0, "warning", 110),
        (3.0, "passive", 130),
        (4.0, "warning", 120),
        (5.0, "warning", 125),
        (6.0, "active", 20),
    ):
        tracker.update(_counter_frame(t, state, tec))
    assert tracker.trend_changes == [(4.0, True), (5.0, False), (6.0, True)]
    stays = tracker.intervals["error_warning"]
    assert stays == [(1.0, 3.0), (4.0, 6.0)]
    assert rising_intervals(stays, tracker.trend_changes) == [
        Episode(1.0, 3.0),
        Episode(5.0, 6.0),
    ]


def test_tec_rising_finding_from_the_timeline() -> None:
    tl = BusTimeline(
        "can0",
        0.0,
        100.0,
        states={"error_warning": ((10.0, 20.0), (40.0, None))},
        trend_changes=((15.0, True), (40.0, True)),
        tec=110,
        rec=0,
    )
    got = found(tl)["CAN_TEC_RISING"]
    assert spans(got) == [(10.0, 15.0)]
    assert got.evidence["tec"] == 110


# -- the ring's columns ----------------------------------------------------------------------


def test_the_windows_count_protocol_types_and_dropped_frames_per_second() -> None:
    w = BusWindows(250_000, keep_history=True)
    data = np.zeros((3, 8), np.uint8)
    data[:, 2] = [0x08, 0x10, 0x04]  # bit0, bit1, stuff
    w.update(error_frame_batch(np.array([10.2, 10.7, 11.5]), CAN_ERR_PROT, data, "can0"))
    w.add_dropped(11.9, 4)
    w.add_dropped(12.0, 0)
    seconds, values = w.ring.series()
    index = w.ring.index
    assert seconds.tolist() == [10, 11]
    assert values[:, index["protocol_bit0"]].tolist() == [1, 0]
    assert values[:, index["protocol_bit1"]].tolist() == [1, 0]
    assert values[:, index["protocol_stuff"]].tolist() == [0, 1]
    assert values[:, index["frames_dropped"]].tolist() == [0, 4]
    assert values[:, index["errors_protocol"]].tolist() == [2, 1]


# -- end to end --------------------------------------------------------------------------------


def _findings(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}

    def walk(fs: list[dict[str, Any]]) -> None:
        for f in fs:
            out[f["code"]] = f
            walk(f.get("consequences", []))

    walk(report["findings"])
    return out


T0 = 1_700_000_000.0  # the simulator's start (docs/reference-bus.md)


def _error_stamps(capture: Path) -> np.ndarray[Any, np.dtype[np.float64]]:
    stamps = []
    for line in capture.read_text().splitlines():
        ident = line.split(" ", 2)[2].split("#")[0]
        if len(ident) == 8 and int(ident, 16) & 0x20000000:
            stamps.append(float(line[1 : line.index(")")]) - T0)
    return np.array(stamps)


@pytest.mark.slow
def test_ack_and_load_bursts_late_in_a_long_capture_between_grid_points(tmp_path: Path) -> None:
    """Bursts after minute 2, each shorter than the 10-s grid and off its points, twice."""
    capture = tmp_path / "late.log"
    faults = [
        "error_frames@253.4+4:class=ack,rate=30",
        "error_frames@401.3+3:class=ack,rate=30",
        "overload@317.3+8:load=0.93",
        "overload@471.6+7:load=0.93",
    ]
    args = ["simulate", "-o", str(capture), "-d", "560"]
    for fault in faults:
        args += ["--fault", fault]
    assert main(args) == 0
    out = tmp_path / "late.json"
    main(["analyze", str(capture), "--json", str(out)])
    got = _findings(json.loads(out.read_text()))
    assert {"CAN_ERR_ACK", "CAN_LOAD_HIGH"} <= set(got), sorted(got)
    stamps = _error_stamps(capture)
    injected_ack = [
        (
            stamps[(stamps >= a) & (stamps < a + 5)].min(),
            stamps[(stamps >= a) & (stamps < a + 5)].max(),
        )
        for a in (253.4, 401.3)
    ]
    ack = [(e["start"] - T0, e["end"] - T0) for e in got["CAN_ERR_ACK"]["episodes"]]
    assert len(ack) == 2
    for (a, b), (first, last) in zip(ack, injected_ack, strict=True):
        assert abs(a - first) <= 1.0 and abs(b - last) <= 1.0, (ack, injected_ack)
    load = [(e["start"] - T0, e["end"] - T0) for e in got["CAN_LOAD_HIGH"]["episodes"]]
    assert len(load) == 2
    for (a, b), (first, last) in zip(load, [(317.3, 325.3), (471.6, 478.6)], strict=True):
        assert abs(a - first) <= 1.0 and abs(b - last) <= 1.0, load


@pytest.mark.slow
def test_a_healthy_capture_gives_no_window_finding(tmp_path: Path) -> None:
    capture = tmp_path / "healthy.log"
    assert main(["simulate", "-o", str(capture), "-d", "300", "--seed", "5"]) == 0
    out = tmp_path / "healthy.json"
    assert main(["analyze", str(capture), "--json", str(out), "--fail-on", "warning"]) == 0
    assert not set(_findings(json.loads(out.read_text()))) & WINDOW_CODES


def test_the_engine_takes_window_findings_from_the_timeline() -> None:
    engine = DiagnosisEngine(book=BOOK)
    engine.apply_timelines(SPAN, [timeline(errors_ack=burst(253, 258, 30))])
    (finding,) = engine.all_findings_flat()
    assert finding.code == "CAN_ERR_ACK" and finding.cleared_at == 259.0
    assert finding.title.startswith("ACK errors on can0")


class _DroppingSource:
    """A frame source that carries a few frames a second and drops some, as the test says."""

    def __init__(self) -> None:
        self.up = True
        self.last_error: str | None = None
        self.dropped = {"socket": 0, "interface": 0}
        self.link_stats = None
        self.pending: list[FrameBatch] = []

    def start(self) -> None: ...

    def stop(self, timeout: float = 0.0) -> None: ...

    def drain(self) -> FrameBatch:
        pending, self.pending = self.pending, []
        return FrameBatch.concat(pending) if pending else FrameBatch.empty()


def test_live_dropped_frames_are_an_episode_with_their_seconds() -> None:
    """The daemon's loop: drops noticed at 110.5 s and 112.5 s are one episode, over once
    absent for clear_after_s, and the engine clears it then."""

    source = _DroppingSource()
    bus = LiveBus(
        BusConfig(name="can0", interface="virtual", channel="t"),
        load_reference_database(),
        source=source,
    )
    bus.set_link(True, 100.0)
    engine = DiagnosisEngine(book=BOOK)
    states = []
    for k in range(1, 141):
        now = 100.0 + k * 0.5
        source.pending.append(batch_of([can.Message(timestamp=now - 0.1, arbitration_id=0x100)]))
        if now in (110.5, 112.5):
            source.dropped["socket"] += 3
        bus.poll(now)
        engine.update(now, [bus.report(now)], [], [bus_timeline(bus.pipeline, now)])
        states.append({f.code: f.end for f in engine.all_findings_flat()})
    assert "CAN_FRAMES_DROPPED" not in states[18]  # 109.5 s: nothing dropped yet
    assert states[20]["CAN_FRAMES_DROPPED"] is None  # 110.5 s: raised, open
    (finding,) = [f for f in engine.all_findings_flat() if f.code == "CAN_FRAMES_DROPPED"]
    assert [(e.start, e.end) for e in finding.episodes] == [(110.0, 113.0)]
    assert finding.title.startswith("The host dropped 6 frames on can0")
    assert finding.cleared_at == 113.0


def test_detection_is_when_the_verdict_first_held_not_the_first_evidence() -> None:
    # A wrong bitrate is proven by its second burst; a load by its 10-s mean.
    wrong = found(timeline(errors_protocol={400: 16, 405: 16}))["CAN_WRONG_BITRATE"]
    assert wrong.episodes[0].start + wrong.proof_s == 406.0
    load = found(timeline(load=dict.fromkeys(range(317, 329), 0.93)))["CAN_LOAD_HIGH"]
    assert 317.0 < load.episodes[0].start + load.proof_s <= 328.0
    ack = found(timeline(errors_ack={200: 3}))["CAN_ERR_ACK"]
    assert ack.proof_s == 1.0  # the end of its second


# -- python-can's logs: what nobody here wrote ---------------------------------------------------

PYCAN = pycan_dir()
PYCAN_LOGS = (
    sorted(p for p in PYCAN.iterdir() if p.suffix not in (".py", ".json") and p.is_file())
    if PYCAN is not None
    else []
)
# The error classes (by_class) one of which a window code's evidence needs in the file.
NEEDS = {
    "CAN_ERR_ACK": ("ack",),
    "CAN_ERR_PHY": ("protocol",),
    "CAN_WRONG_BITRATE": ("protocol",),
    "CAN_ERR_TRX": ("transceiver", "protocol"),
    "CAN_ERROR_FRAMES_UNCLASSIFIED": ("unclassified",),
}


@pytest.mark.slow
@pytest.mark.skipif(not PYCAN_LOGS, reason=f"python-can's test logs not found: {HOW}")
@pytest.mark.parametrize("path", PYCAN_LOGS, ids=[p.name for p in PYCAN_LOGS])
def test_window_findings_on_python_cans_logs_have_their_error_frames(path: Path) -> None:
    """No window finding without the error frames that make it, and each episode inside
    the capture; no load, dropped-frame or rising-counter finding in these short logs."""
    out = subprocess.run(
        [sys.executable, "-m", "candiag", "analyze", str(path), "--json", "-"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    by_class = report["error_frames"]["by_class"]
    start, end = report["capture"]["start"], report["capture"]["end"]
    for code, finding in _findings(report).items():
        if code not in WINDOW_CODES:
            continue
        assert code in NEEDS, code
        assert any(by_class.get(c, 0) > 0 for c in NEEDS[code]), (code, by_class)
        for e in finding["episodes"]:
            assert start - 1.0 <= e["start"] <= end, (code, e, start, end)
            assert e["end"] is None or e["start"] < e["end"] <= end + 1.0, (code, e)
