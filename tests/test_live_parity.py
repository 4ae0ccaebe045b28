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
from candiag.diagnosis.intervals import INTERVAL_CODES, WINDOW_EVIDENCE
from candiag.diagnosis.timeline import bus_timeline
from candiag.ingest.frames import FrameBatch
from candiag.live.bus import LiveBus

FAULTS = (
    "module_silent@70+5:module=3",
    "module_silent@130+5:module=3",
    "contactor_mismatch@100+3:contactor=dc_plus,mode=stuck_open",
    "contactor_mismatch@160+3:contactor=dc_plus,mode=stuck_open",
    "bus_off@190+3",
)


def flat(findings: list[Finding]) -> dict[tuple[str, str], Finding]:
    out = {}
    for f in findings:
        out[(f.code, f.subject)] = f
        out.update(flat(f.consequences))
    return out


def bounds(f: Finding) -> list[tuple[float, float | None]]:
    return [(round(e.start, 3), None if e.end is None else round(e.end, 3)) for e in f.episodes]


@pytest.mark.slow
def test_live_loop_and_analyze_agree_on_codes_and_bounds(tmp_path: Path) -> None:
    capture = tmp_path / "parity.log"
    args = ["simulate", "-o", str(capture), "-d", "240"]
    for fault in FAULTS:
        args += ["--fault", fault]
    assert main(args) == 0
    db = load_reference_database()
    result = analyze_capture(capture, db, bitrate=125_000)

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

    offline_findings = {
        (f["code"], f["subject"]): f for f in _flat_json(result.report.to_json()["findings"])
    }
    live = flat(engine.all_findings())
    exact = INTERVAL_CODES | set(WINDOW_EVIDENCE)
    offline_exact = {k for k in offline_findings if k[0] in exact}
    live_exact = {k for k in live if k[0] in exact}
    assert offline_exact == live_exact
    assert {
        ("CAN_NODE_OFFLINE", "can0/power_module/3"),
        ("CONTACTOR_MISMATCH", "can0/DCPlus"),
        ("CAN_BUS_OFF", "can0"),
    } <= live_exact
    for key in sorted(offline_exact):
        want = [
            (round(e["start"], 3), None if e["end"] is None else round(e["end"], 3))
            for e in offline_findings[key]["episodes"]
        ]
        assert bounds(live[key]) == want, key
    # The same top-level causes, in the same order.
    assert [f.code for f in engine.all_findings()][:3] == [
        f["code"] for f in result.report.to_json()["findings"]
    ][:3]


def _flat_json(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for f in findings:
        out.append(f)
        out.extend(_flat_json(f.get("consequences", [])))
    return out


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
