"""Issue 15: node alarm bits, cooling and the CAN meter's sign as interval rules.

Unit tests of :mod:`candiag.diagnosis.signalrules` on hand-made timelines, and of the
evidence :class:`candiag.health.signals.SignalEvidence` records from frames encoded with
cantools (the reference DBCs): alarm intervals exact to the frames, cut where a node goes
silent; per-second series bounded live and whole offline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from candiag.decode.dbc import ChargerDatabase, load_reference_database
from candiag.decode.decoder import BatchDecoder
from candiag.diagnosis.engine import DiagnosisEngine, load_rulebook
from candiag.diagnosis.episodes import Episode
from candiag.diagnosis.intervals import INTERVAL_CODES
from candiag.diagnosis.signalrules import ALARM_CODES, cooling, meter_reversed, node_alarms
from candiag.diagnosis.timeline import BusTimeline
from candiag.health.signalevidence import RECORDED_ALARMS, AlarmTrace, RoleSeries, SignalEvidence
from candiag.health.signals import SignalStats
from tests.test_health_nodes import encode

BOOK = load_rulebook()
Frames = list[tuple[float, str, int, Mapping[str, float]]]


@pytest.fixture(scope="module")
def db() -> ChargerDatabase:
    return load_reference_database()


def series(
    role: str,
    seconds: Sequence[int],
    values: Sequence[float] | float,
    *,
    unit: str = "",
    node: int = -1,
    stale_after_s: float = 0.6,
    phase: float = 0.9,
) -> RoleSeries:
    """One source: a frame at ``second + phase`` of each second, with its value."""
    s = np.asarray(seconds, np.int64)
    v = np.broadcast_to(np.asarray(values, np.float64), s.shape).copy()
    return RoleSeries(role, "Msg", role, node, unit, stale_after_s, s, v, s + phase)


def timeline(
    end: float, sources: Sequence[RoleSeries] = (), alarms: Sequence[AlarmTrace] = ()
) -> BusTimeline:
    by_role: dict[str, list[RoleSeries]] = {}
    for s in sources:
        by_role.setdefault(s.role, []).append(s)
    return BusTimeline(
        "can0",
        0.0,
        end,
        alarms=tuple(alarms),
        series={k: tuple(v) for k, v in by_role.items()},
    )


def bounds(episodes: Sequence[Episode]) -> list[tuple[float, float | None]]:
    return [(e.start, e.end) for e in episodes]


# -- the rules on hand-made timelines ------------------------------------------------------


def test_every_alarm_the_rules_read_is_recorded() -> None:
    assert set(ALARM_CODES) <= RECORDED_ALARMS


def test_signal_codes_are_interval_codes() -> None:
    wanted = {
        "CAN_NODE_ALARM_COMM",
        "CAN_NODE_ALARM_TEMP",
        "CAN_NODE_ALARM_FAN",
        "COOLING_NO_FLOW",
        "COOLING_OVERTEMP",
        "METER_REVERSED",
    }
    assert wanted <= INTERVAL_CODES


def test_no_flow_episodes_to_the_second_and_open_at_the_end() -> None:
    secs = list(range(300))
    flow = np.full(300, 12.0)
    flow[130:150] = 0.2  # 20 s without flow, late, between 10-s grid points
    flow[287:] = 0.0  # and again at the end of the data
    pump = series("cooling:pump_command", secs, 80.0, unit="%")
    found = cooling(BOOK, timeline(299.95, [pump, series("cooling:flow", secs, flow)]))
    assert [f.code for f in found] == ["COOLING_NO_FLOW"]
    (finding,) = found
    assert finding.subject == "can0/cooling"
    # Bounded by the frames that first showed the fault, and first showed it gone.
    assert bounds(finding.episodes) == [(130.9, 150.9), (287.9, None)]
    assert finding.evidence == {"pump_command": 0.8, "flow": 0.0}


def test_no_flow_needs_the_pump_commanded_above_its_threshold() -> None:
    secs = list(range(100))
    flow = series("cooling:flow", secs, 0.0)
    idle = series("cooling:pump_command", secs, 10.0, unit="%")  # 0.1 < pump_min_command
    assert cooling(BOOK, timeline(99.95, [idle, flow])) == []


def test_stale_values_neither_raise_nor_keep_a_finding() -> None:
    # The pump's message stops at second 40; flow reads zero from 30 on.
    pump = series("cooling:pump_command", range(40), 80.0, unit="%")
    flow = series("cooling:flow", range(100), [5.0] * 30 + [0.0] * 70)
    (finding,) = cooling(BOOK, timeline(99.95, [pump, flow]))
    # Fresh until 39.9 + 0.6: the episode ends at the pump's last frame, 39.9.
    assert bounds(finding.episodes) == [(30.9, 39.9)]
    # A flow that was last seen at zero long ago is not "no flow now".
    old = series("cooling:flow", range(10), 0.0)
    pump_on = series("cooling:pump_command", range(100), 80.0, unit="%")
    (finding,) = cooling(BOOK, timeline(99.95, [pump_on, old]))
    assert bounds(finding.episodes) == [(0.9, 9.9)]


def test_overtemperature_takes_the_hottest_fresh_sensor_and_names_it() -> None:
    secs = range(200)
    cool = series("cooling:coolant_temperature", secs, 40.0, node=1)
    hot_values = np.full(200, 45.0)
    hot_values[150:170] = np.linspace(56.0, 70.0, 20)
    hot = series("cooling:coolant_temperature", secs, hot_values, node=2)
    (finding,) = cooling(BOOK, timeline(199.95, [cool, hot]))
    assert finding.code == "COOLING_OVERTEMP"
    assert bounds(finding.episodes) == [(150.9, 170.9)]
    assert finding.fields["temperature"] == "70.0 degC"


def test_meter_reversed_on_the_summed_modules_and_the_meter_in_milliamperes() -> None:
    secs = range(300)
    # Two modules of 3 A each: only their sum passes meter_reversed_min_a (5 A).
    m1 = series("output_current", secs, 3.0, node=1)
    m2 = series("output_current", secs, 3.0, node=2)
    meter_ma = np.full(300, 6000.0)
    meter_ma[200:215] = -6000.0
    meter = series("meter:current", secs, meter_ma, unit="mA")
    (finding,) = meter_reversed(BOOK, timeline(299.95, [m1, m2, meter]))
    assert (finding.code, finding.subject) == ("METER_REVERSED", "can0/dc_meter")
    assert bounds(finding.episodes) == [(200.9, 215.9)]
    assert finding.evidence["modules_output_a"] == 6.0
    assert finding.evidence["meter_current_a"] == -6.0
    # One module alone is below the threshold: no finding.
    assert meter_reversed(BOOK, timeline(299.95, [m1, meter])) == []


def test_meter_reversed_needs_a_fresh_meter_on_the_same_bus() -> None:
    secs = range(100)
    modules = series("output_current", secs, 100.0, node=1)
    meter = series("meter:current", range(10), -100.0)  # silent after 10 s
    (finding,) = meter_reversed(BOOK, timeline(99.95, [modules, meter]))
    assert bounds(finding.episodes) == [(0.9, 9.9)]
    assert meter_reversed(BOOK, timeline(99.95, [modules])) == []


def test_node_alarms_one_finding_per_node_and_alarm_with_its_episodes() -> None:
    traces = [
        AlarmTrace("power_module", 3, "over_temperature", "ModuleStatus", ((120.3, 140.1),), 300.0),
        AlarmTrace(
            "power_module",
            3,
            "over_temperature",
            "ModuleRegister",
            ((139.0, 145.5), (250.25, None)),
            300.0,
        ),
        AlarmTrace("power_module", 4, "fan", "ModuleStatus", ((10.0, 11.0),), 300.0),
        AlarmTrace("power_module", 4, "input_phase_lost", "ModuleStatus", ((5.0, 9.0),), 300.0),
    ]
    found = {(f.code, f.subject): f for f in node_alarms(BOOK, timeline(300.0, alarms=traces))}
    assert set(found) == {
        ("CAN_NODE_ALARM_TEMP", "can0/power_module/3"),
        ("CAN_NODE_ALARM_FAN", "can0/power_module/4"),
    }
    temp = found[("CAN_NODE_ALARM_TEMP", "can0/power_module/3")]
    # The two messages' intervals overlap: one episode; the bit set again later: another.
    assert bounds(temp.episodes) == [(120.3, 145.5), (250.25, None)]
    assert temp.fields["family"] == "power module" and temp.fields["address"] == 3


def test_engine_keeps_the_instant_rule_only_for_the_modbus_meter() -> None:
    """The CAN variant comes from the timeline; a Modbus meter's stays an instant."""
    from tests.bus_reports import bus_report

    engine = DiagnosisEngine(book=BOOK)
    report = bus_report({"name": "can0", "currents": {"modules_output_a": 50.0, "meter_a": -50.0}})
    meter = {"name": "dc", "up": True, "dc": True, "readings": {"current": {"value": -50.0}}}
    engine.update(10.0, [report], [meter], [timeline(10.0)])
    subjects = {f.subject for f in engine.findings() if f.code == "METER_REVERSED"}
    assert subjects == {"modbus/dc"}


# -- what the trackers record ----------------------------------------------------------------


def status(t: float, node: int, **alarms: float) -> tuple[float, str, int, Mapping[str, float]]:
    return (t, "ModuleStatus", node, dict(alarms))


def feed(evidence: SignalEvidence, db: ChargerDatabase, frames: Frames) -> None:
    for message in BatchDecoder(db).decode(encode(db, frames)).messages.values():
        evidence.update(message)


def test_alarm_intervals_exact_to_the_frames_across_batches(db: ChargerDatabase) -> None:
    evidence = SignalEvidence(db)
    period = 0.2  # ModuleStatus's cycle time
    times = np.round(np.arange(100.0, 200.0, period), 3)

    def bit(t: float) -> float:
        return 1.0 if 130.4 <= t < 150.6 or 181.2 <= t else 0.0

    frames = [status(float(t), 2, over_temperature_alarm=bit(t)) for t in times]
    frames += [status(float(t), 5, fan_fault_alarm=0.0) for t in times]
    for lo in range(0, len(frames), 37):  # batches cut anywhere
        feed(evidence, db, frames[lo : lo + 37])
    traces = {(t.address, t.alarm): t for t in evidence.alarm_traces(199.9)}
    assert set(traces) == {(2, "over_temperature")}  # a bit never set is not recorded
    intervals = traces[(2, "over_temperature")].intervals
    assert intervals[0] == (pytest.approx(130.4), pytest.approx(150.6))
    assert intervals[1][0] == pytest.approx(181.2) and intervals[1][1] is None


def test_a_silent_node_ends_its_alarm_at_its_last_frame(db: ChargerDatabase) -> None:
    evidence = SignalEvidence(db)
    frames = [status(t, 7, communication_interrupt_alarm=1.0) for t in (10.0, 10.2, 10.4)]
    feed(evidence, db, frames)
    # Still fresh at 10.5: open; silent at 20: the last frame that had it set is the end.
    (fresh,) = evidence.alarm_traces(10.5)
    assert fresh.intervals == ((10.0, None),)
    (stale,) = evidence.alarm_traces(20.0)
    assert stale.intervals == ((10.0, 10.4),)
    # It comes back, still set: a new interval from its first frame after the silence.
    feed(evidence, db, [status(t, 7, communication_interrupt_alarm=1.0) for t in (30.0, 30.2)])
    (back,) = evidence.alarm_traces(30.3)
    assert back.intervals == ((10.0, 10.4), (30.0, None))


def test_series_last_value_per_second_live_bounded_offline_whole(db: ChargerDatabase) -> None:
    def meter_frames(t0: float, t1: float) -> Frames:
        return [
            (float(t), "Meter_Current", -1, {"Current": float(t)})
            for t in np.round(np.arange(t0 + 0.3, t1, 0.5), 3)
        ]

    live = SignalStats(db, history_s=600.0)  # live: the last ``history_s`` (default an hour)
    whole = SignalStats(db, history_s=None)
    decoder = BatchDecoder(db)
    for t0 in range(0, 1200, 100):
        result = decoder.decode(encode(db, meter_frames(float(t0), t0 + 100.0)))
        live.update(result, stats=False)
        whole.update(result, stats=False)
    (w,) = whole.evidence.role_series()["meter:current"]
    (b,) = live.evidence.role_series()["meter:current"]
    assert w.seconds[0] == 0 and w.seconds[-1] == 1199 and w.seconds.size == 1200
    assert w.values[5] == pytest.approx(5.8) and w.times[5] == pytest.approx(5.8)
    assert b.seconds[0] == 1199 - 600 + 1 and b.seconds[-1] == 1199
    assert w.unit == "A" and w.stale_after_s == pytest.approx(0.3)


MUX_DBC = """VERSION ""
NS_ :
BS_:
BU_: Controller Module
BO_ 2147484416 Register: 8 Module
 SG_ Reg M : 0|8@1+ (1,0) [0|255] "" Controller
 SG_ FanAlarm m1 : 8|1@1+ (1,0) [0|1] "" Controller
 SG_ Temperature m2 : 8|16@1- (0.1,0) [-3276.8|3276.7] "degC" Controller
BA_DEF_ BO_ "GenMsgCycleTime" INT 0 3600000;
BA_DEF_ BO_ "CandiagNodeMask" HEX 0 536870911;
BA_DEF_ BO_ "CandiagNodeFamily" STRING ;
BA_DEF_ SG_ "CandiagRole" STRING ;
BA_DEF_DEF_ "GenMsgCycleTime" 0;
BA_DEF_DEF_ "CandiagNodeMask" 0;
BA_DEF_DEF_ "CandiagNodeFamily" "";
BA_DEF_DEF_ "CandiagRole" "";
BA_ "GenMsgCycleTime" BO_ 2147484416 100;
BA_ "CandiagNodeMask" BO_ 2147484416 255;
BA_ "CandiagNodeFamily" BO_ 2147484416 "power_module";
BA_ "CandiagRole" SG_ 2147484416 FanAlarm "alarm:fan";
"""


def test_a_multiplexed_alarm_lasts_between_the_frames_that_carry_it() -> None:
    """The alarm register comes once a second among other registers every 100 ms: the
    frames without it keep its value (the node still sends); the message's silence ends it."""
    from candiag.decode.dbc import load_dbc_text

    mux = load_dbc_text(MUX_DBC)
    evidence = SignalEvidence(mux)
    frames: Frames = []
    for k in range(600):  # 60 s at 100 ms; the alarm register every 10th frame
        t = round(k * 0.1, 3)
        if 30.0 <= t < 40.0:
            continue  # the node is silent for 10 s
        if k % 10 == 0:
            frames.append((t, "Register", 9, {"Reg": 1, "FanAlarm": 1.0 if 12 <= t < 50 else 0.0}))
        else:
            frames.append((t, "Register", 9, {"Reg": 2, "Temperature": 40.0}))
    for lo in range(0, len(frames), 53):
        feed(evidence, mux, frames[lo : lo + 53])
    (trace,) = evidence.alarm_traces(60.0)
    # Set at 12.0, carried through the other registers, cut at the last frame before the
    # silence (29.9), set again from the first alarm-register frame after it (40.0) to 50.0.
    assert trace.intervals == ((12.0, 29.9), (40.0, 50.0))
    (finding,) = node_alarms(BOOK, timeline(60.0, alarms=[trace]))
    assert (finding.code, finding.subject) == ("CAN_NODE_ALARM_FAN", "can0/power_module/9")


@pytest.mark.parametrize("history_s", [None, 500.0])
def test_series_over_many_batches_equal_a_per_frame_reference(history_s: float | None) -> None:
    """Thousands of small batches (rows split by node every 64, blocks joined every 64 per
    node), seconds straddling batches, nodes interleaved: each node's last value of each
    second, as a dict built frame by frame says."""
    from candiag.health.signalevidence import _SecondSeries

    rng = np.random.default_rng(5)
    series = _SecondSeries("output_current", "M", "I", "A", 0.3, history_s)
    reference: dict[tuple[int, int], tuple[float, float]] = {}
    t = 0.0
    for _ in range(5000):
        n = int(rng.integers(1, 4))
        ts = t + np.sort(rng.uniform(0.0, 0.4, n))
        t = float(ts[-1])
        nodes = rng.integers(1, 4, n).astype(np.int64)
        values = rng.normal(size=n)
        series.add(nodes, ts, values)
        for node, stamp, value in zip(nodes.tolist(), ts.tolist(), values.tolist(), strict=True):
            reference[(node, int(np.floor(stamp)))] = (value, stamp)
    newest = max(s for _, s in reference)
    for found in series.frozen():
        want = sorted(
            (s, v, ts)
            for (node, s), (v, ts) in reference.items()
            if node == found.node and (history_s is None or s > newest - history_s)
        )
        assert found.seconds.tolist() == [w[0] for w in want]
        assert found.values.tolist() == [w[1] for w in want]
        assert found.times.tolist() == [w[2] for w in want]
    assert {s.node for s in series.frozen()} == {1, 2, 3}
