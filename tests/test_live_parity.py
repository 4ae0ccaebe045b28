"""Issue 15: the daemon's loop and ``analyze`` find the same faults, with the same bounds.

One capture is analyzed offline, and fed to a :class:`~candiag.live.bus.LiveBus` in quarter-second
batches with the engine evaluated every second, as the daemon and the monitor do
(``DiagnosisEngine.update`` with each bus's timeline).  Both must give the same findings,
each with the same episodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from candiag.analysis import analyze_capture
from candiag.capture import CaptureReader
from candiag.cli import main
from candiag.config.model import BusConfig
from candiag.decode.dbc import load_reference_database
from candiag.diagnosis.engine import DiagnosisEngine, Finding
from candiag.diagnosis.intervals import INTERVAL_CODES
from candiag.diagnosis.timeline import bus_timeline
from candiag.ingest.frames import FrameBatch
from candiag.live.bus import LiveBus

FAULTS = (
    "module_silent@70+5:module=3",
    "module_silent@130+5:module=3",
    "contactor_mismatch@100+3:contactor=dc_plus,mode=stuck_open",
    "contactor_mismatch@160+3:contactor=dc_plus,mode=stuck_open",
    "bus_off@190+3",
    # signal rules: per-second cooling and meter evidence, the cooling unit's alarm bit
    "cooling_no_flow@105.4+20",
    "cooling_no_flow@175.7+20",
    "meter_reversed@112.3+8",
    "meter_reversed@205.5+6",
)
# The window rules' faults, each coming and going between the 10-s grid's points.
WINDOW_FAULTS = (
    "wrong_bitrate@63.6+9",
    "error_frames@95.4+6:class=ack,rate=40",
    "overload@108.2+12:load=0.93",
    "error_frames@140.3+5:class=bit0,rate=20",
    "controller@165.5+7:state=warning,tec=110",
    "error_frames@205.7+4:class=stuff,rate=3",
)


def flat(findings: list[Finding]) -> dict[tuple[str, str], Finding]:
    out = {}
    for f in findings:
        out[(f.code, f.subject)] = f
        out.update(flat(f.consequences))
    return out


def bounds(f: Finding) -> list[tuple[float, float | None]]:
    return [(round(e.start, 3), None if e.end is None else round(e.end, 3)) for e in f.episodes]


def live_engine(capture: Path, db: Any) -> DiagnosisEngine:
    """``capture`` fed to a live bus in quarter-second batches, its engine run every second
    with the bus's report and timeline, as the daemon's loop does."""
    whole = FrameBatch.concat(list(CaptureReader(capture).batches()))
    t0, t1 = float(whole.timestamp[0]), float(whole.timestamp[-1])
    monitor = LiveBus(BusConfig(name="can0", interface="virtual", channel="t"), db)
    monitor.set_link(True, t0)
    engine = DiagnosisEngine()
    step = 0.25
    edges = np.searchsorted(whole.timestamp, np.arange(t0, t1 + step, step), side="left")
    for k, (lo, hi) in enumerate(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True)):
        now = min(t0 + (k + 1) * step, t1)
        monitor.process(whole.take(slice(lo, hi)))
        monitor.advance(now)
        if k % 4 == 3 or hi == len(whole):
            report = monitor.report(now)
            engine.update(now, [report], [], [bus_timeline(monitor.pipeline, now)])
    engine.update(t1, [monitor.report(t1)], [], [bus_timeline(monitor.pipeline, t1)])
    return engine


def both_ways(
    capture: Path, faults: tuple[str, ...]
) -> tuple[dict[tuple[str, str], dict[str, Any]], DiagnosisEngine, list[dict[str, Any]]]:
    """The capture analyzed offline, and fed to a live bus whose engine runs every second:
    (offline findings by key, the live engine, the offline top-level findings)."""
    args = ["simulate", "-o", str(capture), "-d", "240"]
    for fault in faults:
        args += ["--fault", fault]
    assert main(args) == 0
    db = load_reference_database()
    result = analyze_capture(capture, db, bitrate=125_000)

    engine = live_engine(capture, db)
    top = result.report.to_json()["findings"]
    return {(f["code"], f["subject"]): f for f in _flat_json(top)}, engine, top


def assert_same_bounds(
    offline_findings: dict[tuple[str, str], dict[str, Any]], engine: DiagnosisEngine
) -> set[tuple[str, str]]:
    """The interval codes' findings are the same both ways, episode for episode."""
    live = flat(engine.all_findings())
    offline_exact = {k for k in offline_findings if k[0] in INTERVAL_CODES}
    live_exact = {k for k in live if k[0] in INTERVAL_CODES}
    assert offline_exact == live_exact
    for key in sorted(offline_exact):
        want = [
            (round(e["start"], 3), None if e["end"] is None else round(e["end"], 3))
            for e in offline_findings[key]["episodes"]
        ]
        assert bounds(live[key]) == want, key
    return live_exact


@pytest.mark.slow
def test_live_loop_and_analyze_agree_on_codes_and_bounds(tmp_path: Path) -> None:
    offline_findings, engine, top = both_ways(tmp_path / "parity.log", FAULTS)
    live_exact = assert_same_bounds(offline_findings, engine)
    assert {
        ("CAN_NODE_OFFLINE", "can0/power_module/3"),
        ("CONTACTOR_MISMATCH", "can0/DCPlus"),
        ("CAN_BUS_OFF", "can0"),
        ("COOLING_NO_FLOW", "can0/cooling"),
        ("COOLING_OVERTEMP", "can0/cooling"),
        ("CAN_NODE_ALARM_TEMP", "can0/cooling/0"),
        ("METER_REVERSED", "can0/dc_meter"),
    } <= live_exact
    # The same top-level causes, in the same order.
    assert [f.code for f in engine.all_findings()][:3] == [f["code"] for f in top][:3]


@pytest.mark.slow
def test_live_loop_and_analyze_agree_on_the_window_rules(tmp_path: Path) -> None:
    """ACK errors, a load burst, a wrong bitrate, bit0 errors, counters rising to the
    warning level and a few stuff errors, each for a few seconds between the 10-s grid's
    points: found both ways, with the same episodes."""
    offline_findings, engine, _ = both_ways(tmp_path / "windows.log", WINDOW_FAULTS)
    live_exact = assert_same_bounds(offline_findings, engine)
    assert {
        ("CAN_ERR_ACK", "can0"),
        ("CAN_LOAD_HIGH", "can0"),
        ("CAN_WRONG_BITRATE", "can0"),
        ("CAN_ERR_TRX", "can0"),
        ("CAN_TEC_RISING", "can0"),
        ("CAN_ERR_PHY", "can0"),
    } <= live_exact


def _flat_json(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for f in findings:
        out.append(f)
        out.extend(_flat_json(f.get("consequences", [])))
    return out


# -- nodes group (candiag/diagnosis/noderules.py) --------------------------------------------

NODE_FAULTS = (
    "duplicate_address@63.43+20:module=2",
    "jitter@95+30:module=4,ratio=0.9",
    "module_silent@140.33+5:module=3",
    "firmware_mismatch@170.55+30:module=5,dcdc_minor=3",
)


def _live_findings(capture: Path, db: Any) -> dict[tuple[str, str], Finding]:
    return flat(live_engine(capture, db).all_findings())


@pytest.mark.slow
def test_live_loop_and_analyze_agree_on_the_nodes_groups_findings(tmp_path: Path) -> None:
    from candiag.diagnosis.noderules import CODES

    full = tmp_path / "full.log"
    args = ["simulate", "-o", str(full), "-d", "260"]
    for fault in NODE_FAULTS:
        args += ["--fault", fault]
    assert main(args) == 0
    # A pulled cable at 222.34-229.87 s: every node silent at once.
    t0 = 1_700_000_000.0
    lines = [
        ln
        for ln in full.read_text().splitlines()
        if not t0 + 222.34 <= float(ln[1 : ln.index(")")]) < t0 + 229.87
    ]
    capture = tmp_path / "parity_nodes.log"
    capture.write_text("\n".join(lines) + "\n")
    db = load_reference_database()
    result = analyze_capture(capture, db, bitrate=125_000)
    offline = {
        (f["code"], f["subject"]): f
        for f in _flat_json(result.report.to_json()["findings"])
        if f["code"] in CODES
    }
    live = {k: f for k, f in _live_findings(capture, db).items() if k[0] in CODES}
    assert set(offline) == set(live)
    assert {
        "CAN_BUS_SILENT",
        "CAN_NODE_INTERMITTENT",
        "CAN_NODE_DUPLICATE",
        "CAN_FW_MISMATCH",
        "CAN_CYCLE_VIOLATION",
    } <= {k[0] for k in live}
    for key in sorted(offline):
        want = [
            (round(e["start"], 3), None if e["end"] is None else round(e["end"], 3))
            for e in offline[key]["episodes"]
        ]
        assert bounds(live[key]) == want, key


# Liveness group: polled power modules (candiag/liveness/intervals.py), each fault twice.
PROTOCOL_FAULTS = (
    "module_silent@70.3+4",
    "module_silent@130.3+4",
    "controller_silent@100.3+4:module=1",
    "controller_silent@160.3+4:module=1",
    "rejected_requests@85.3+3:module=2",
    "duplicate_address@190.3+3",
)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["winline", "huawei"])
def test_live_loop_and_analyze_agree_on_liveness_episodes(protocol: str, tmp_path: Path) -> None:
    from candiag.decode.dbc import load_dbc_paths
    from candiag.liveness.intervals import LIVENESS_CODES
    from candiag.sim.protocols.packs import pack_path

    capture = tmp_path / "parity.log"
    args = ["simulate", "--protocol", protocol, "-o", str(capture), "-d", "240", "-q"]
    for fault in PROTOCOL_FAULTS:
        args += ["--fault", fault]
    assert main(args) == 0
    db = load_dbc_paths([pack_path(protocol)])
    result = analyze_capture(capture, db, bitrate=125_000)

    engine = live_engine(capture, db)

    offline = {
        (f["code"], f["subject"]): f
        for f in _flat_json(result.report.to_json()["findings"])
        if f["code"] in LIVENESS_CODES
    }
    live = {k: f for k, f in flat(engine.all_findings()).items() if k[0] in LIVENESS_CODES}
    assert set(offline) == set(live)
    assert {
        (
            "CAN_MODULE_NOT_ANSWERING",
            "can0/power_module/4" if protocol == "winline" else "can0/power_module/2",
        ),
        ("CAN_CONTROLLER_NOT_POLLING", "can0/power_module/1"),
        ("CAN_MODULE_REJECTS_REQUESTS", "can0/power_module/2"),
    } <= set(live), sorted(live)
    for key, f in offline.items():
        want = [
            (round(e["start"], 3), None if e["end"] is None else round(e["end"], 3))
            for e in f["episodes"]
        ]
        assert bounds(live[key]) == want, key
        assert len(want) >= 1
