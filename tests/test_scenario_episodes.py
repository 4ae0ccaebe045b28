"""Issue 15's scenario suite: each scenario placed late in a capture and repeated 3 times.

For each scenario of ``candiag/sim/scenarios.toml`` the faults are played three times,
after minute 1 (at 70, 220 and 370 s, 40 s each), through the real CLI.  The top finding
must be the injected cause, with one episode per injection, whose bounds lie within one
frame period (rules exact to the frames), one second (window and signal rules, read per
second) or one 10 s step (cycle times, a minute of periods judged every 10 s) of the
injected ones.  The injected bounds are the fault windows, or for random error frames
the first and last error frame the simulator wrote inside each window.

Run with ``-s`` to see the table the issue's closing note asks for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from candiag.cli import main
from candiag.sim.faults import Fault
from candiag.sim.scenarios import scenario_faults

STARTS = (70.0, 220.0, 370.0)
FAULT_S = 40.0
DURATION = 450.0
FRAME = 0.1  # the reference charger's shortest cycle (docs/reference-bus.md)

# scenario: (top code, subject contains, the fault kind that is the cause, tolerance s,
# bounds from: "window" = the fault window, "errors" = the error frames inside it, "flow" =
# the cooling unit's frames showing no flow while the pump is commanded: its flow lags the
# stopped pump by seconds, as a real loop's does).
# Every code is an interval rule now: each row has its tolerance (frames, seconds, or the
# 10 s steps a minute of periods is judged on).
EXPECT: dict[str, tuple[str, str, str, float | None, str]] = {
    "module_offline": ("CAN_NODE_OFFLINE", "power_module/3", "module_silent", FRAME, "window"),
    "contactor_mismatch": ("CONTACTOR_MISMATCH", "DCPlus", "contactor_mismatch", FRAME, "window"),
    "bus_off": ("CAN_BUS_OFF", "can0", "bus_off", FRAME, "window"),
    "termination": ("CAN_ERR_PHY", "can0", "error_frames", 1.0, "errors"),
    "wrong_bitrate": ("CAN_WRONG_BITRATE", "can0", "wrong_bitrate", 1.0, "errors"),
    "overload": ("CAN_LOAD_HIGH", "can0", "overload", 1.0, "window"),
    # The duplicate's end: the first ModuleStatus frame (every 200 ms) with its alarm clear.
    "duplicate_address": (
        "CAN_NODE_DUPLICATE",
        "power_module/2",
        "duplicate_address",
        2 * FRAME,
        "window",
    ),
    "cooling_flow": ("COOLING_NO_FLOW", "cooling", "cooling_no_flow", 1.0, "flow"),
    # A minute of periods judged every 10 s, bounded by the 10 s steps holding late periods.
    "jitter": ("CAN_CYCLE_VIOLATION", "F004", "jitter", 10.0, "window"),
}


def fault_spec(fault: Fault) -> str:
    timing = f"{fault.start:g}" + ("" if fault.duration is None else f"+{fault.duration:g}")
    params = ",".join(f"{k}={v}" for k, v in fault.params.items())
    return f"{fault.kind}@{timing}" + (f":{params}" if params else "")


def repeated(scenario: str) -> list[Fault]:
    """The scenario's faults shifted to each of :data:`STARTS`, cut to :data:`FAULT_S`."""
    faults = scenario_faults(scenario)
    first = min(f.start for f in faults)
    out = []
    for at in STARTS:
        for f in faults:
            start = at + f.start - first
            length = FAULT_S if f.duration is None else min(f.duration, FAULT_S)
            out.append(Fault(f.kind, start, length, dict(f.params)))
    return out


def injected(
    capture: Path, faults: list[Fault], kind: str, source: str
) -> list[tuple[float, float]]:
    """Injected episodes relative to the simulation start."""
    windows = sorted({(f.start, f.start + (f.duration or 0.0)) for f in faults if f.kind == kind})
    if source == "flow":
        return no_flow_frames(capture)
    if source != "errors":
        return windows
    stamps = []
    for line in capture.read_text().splitlines():
        ident = line.split(" ", 2)[2].split("#")[0]
        if len(ident) == 8 and int(ident, 16) & 0x20000000:
            stamps.append(float(line[1 : line.index(")")]))
    t = np.array(stamps) - 1_700_000_000.0  # the simulator's start (docs/reference-bus.md)
    out = []
    for a, b in windows:
        inside = t[(t >= a) & (t < b)]
        out.append((float(inside.min()), float(inside.max())))
    return out


def no_flow_frames(capture: Path) -> list[tuple[float, float]]:
    """From the first CoolingStatus frame with flow under 1 L/min while the last pump
    command was at least 20 % to the first frame without, as cantools decodes them."""
    import cantools

    from candiag.sim.charger import reference_dbc_files

    db = cantools.database.Database()
    for path in reference_dbc_files():
        db.add_dbc_file(str(path))
    status, actuators = (
        db.get_message_by_name("CoolingStatus"),
        db.get_message_by_name("CoolingActuators"),
    )
    pump, on, out = 0.0, None, []
    for line in capture.read_text().splitlines():
        stamp, _, frame = line.split(" ", 2)
        ident, data = frame.split("#")
        if int(ident, 16) == actuators.frame_id:
            pump = actuators.decode(bytes.fromhex(data))["PumpSpeedCommand"]
        elif int(ident, 16) == status.frame_id:
            t = float(stamp[1:-1]) - 1_700_000_000.0
            dry = pump >= 20.0 and status.decode(bytes.fromhex(data))["CoolantFlow"] < 1.0
            if dry and on is None:
                on = t
            elif not dry and on is not None:
                out.append((on, t))
                on = None
    return out


def run(tmp_path: Path, scenario: str) -> tuple[dict[str, Any], list[Fault], Path]:
    faults = repeated(scenario)
    capture = tmp_path / f"{scenario}.log"
    args = ["simulate", "-o", str(capture), "-d", str(DURATION)]
    for f in faults:
        args += ["--fault", fault_spec(f)]
    assert main(args) == 0
    out = tmp_path / f"{scenario}.json"
    main(["analyze", str(capture), "--json", str(out)])
    report: dict[str, Any] = json.loads(out.read_text())
    return report, faults, capture


ROWS: list[str] = []


@pytest.mark.slow
@pytest.mark.parametrize("scenario", sorted(EXPECT))
def test_late_repeated_scenario_top_finding_and_its_episodes(tmp_path: Path, scenario: str) -> None:
    code, subject, kind, tolerance, source = EXPECT[scenario]
    report, faults, capture = run(tmp_path, scenario)
    top = report["findings"][0]
    t0 = 1_700_000_000.0
    found = [
        (e["start"] - t0, None if e["end"] is None else e["end"] - t0) for e in top["episodes"]
    ]
    truth = injected(capture, faults, kind, source) if source else []
    errors = [
        max(abs(f[0] - t[0]), abs((f[1] if f[1] is not None else np.inf) - t[1]))
        for f, t in zip(found, truth, strict=False)
    ]
    worst = max(errors) if errors and len(found) == len(truth) else None
    ROWS.append(
        f"{scenario:20s} {top['code']:22s} episodes {len(found)} vs injected 3  "
        f"bounds error {'-' if worst is None else f'{worst:.3f} s'}"
    )
    print("\nSCENARIO " + ROWS[-1])
    assert (top["code"], subject in top["subject"]) == (code, True), report["findings"][:2]
    if tolerance is None:
        return
    assert len(found) == 3, found
    assert worst is not None and worst <= tolerance, (found, truth)


@pytest.mark.slow
def test_firmware_mismatch_late_in_a_long_capture() -> None:
    """A firmware mismatch is there from the module's first frame: it cannot repeat; it
    must still lead in a long capture (checked over 450 s, as the others)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        capture = Path(tmp) / "fw.log"
        assert (
            main(
                [
                    "simulate",
                    "-o",
                    str(capture),
                    "-d",
                    str(DURATION),
                    "--scenario",
                    "firmware_mismatch",
                ]
            )
            == 0
        )
        out = Path(tmp) / "fw.json"
        main(["analyze", str(capture), "--json", str(out)])
        report = json.loads(out.read_text())
    top = report["findings"][0]
    assert top["code"] == "CAN_FW_MISMATCH" and top["occurrences"] == 1


@pytest.mark.slow
def test_healthy_sessions_with_four_modules_and_lost_arbitration_give_no_warning(
    tmp_path: Path,
) -> None:
    """A whole session and its stop (pre-charge, contactors closing and opening with their
    normal feedback lag), 4 modules where the DBC allows 8+, occasional lost arbitration."""
    capture = tmp_path / "healthy.log"
    args = ["simulate", "-o", str(capture), "-d", "1300", "--modules", "4", "--seed", "3"]
    args += ["--fault", "error_frames@100:class=lost_arbitration,rate=0.02"]
    assert main(args) == 0
    out = tmp_path / "healthy.json"
    assert main(["analyze", str(capture), "--json", str(out), "--fail-on", "warning"]) == 0
    report = json.loads(out.read_text())
    assert report["error_frames"]["by_class"]["lost_arbitration"] > 0
    assert [f for f in report["findings"] if f["severity"] in ("critical", "warning")] == []
    assert all(not c["stale"] for c in report["contactors"])
