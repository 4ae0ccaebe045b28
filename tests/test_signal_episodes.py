"""Issue 15, signal rules end to end: ``candiag analyze`` of simulated captures.

Cooling without flow and a reversed DC meter come and go three times late in a capture
(after minute 2, between the old 10-s evaluation grid points).  The truth is read from the
capture independently of candiag (python-can's reader, cantools with the reference DBCs):
the first and last frames that show each fault.  The findings must have one episode per
injection, each within a second of that truth (the rules judge every second's end), and
the cooling unit's own over-temperature bit exact to its frames.  A healthy session gives
none of these findings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import can
import cantools
import numpy as np
import pytest

from candiag.cli import main
from candiag.sim.charger import reference_dbc_files

T0 = 1_700_000_000.0  # the simulator's start (docs/reference-bus.md)
NO_FLOW = ((135.4, 20.0), (215.7, 25.0), (305.3, 20.0))
REVERSED = ((150.3, 12.0), (245.5, 10.0), (335.7, 8.0))
SIGNAL_CODES = {
    "CAN_NODE_ALARM_COMM",
    "CAN_NODE_ALARM_TEMP",
    "CAN_NODE_ALARM_FAN",
    "COOLING_NO_FLOW",
    "COOLING_OVERTEMP",
    "METER_REVERSED",
}


def decoded(capture: Path, names: set[str]) -> dict[str, tuple[np.ndarray, list[dict[str, Any]]]]:
    """(times, decoded values) of the named messages, read and decoded by python-can and
    cantools alone."""
    db = cantools.database.Database()
    for path in reference_dbc_files():
        db.add_dbc_file(str(path))
    by_id = {db.get_message_by_name(n).frame_id: n for n in names}
    out: dict[str, tuple[list[float], list[dict[str, Any]]]] = {n: ([], []) for n in names}
    with can.LogReader(str(capture)) as reader:
        for msg in reader:
            name = by_id.get(msg.arbitration_id)
            if name is None or msg.is_error_frame:
                continue
            out[name][0].append(msg.timestamp - T0)
            out[name][1].append(db.decode_message(msg.arbitration_id, msg.data))
    return {n: (np.array(t), v) for n, (t, v) in out.items()}


def truth_runs(times: np.ndarray, on: np.ndarray) -> list[tuple[float, float | None]]:
    """Runs of frames where ``on``: (first frame on, first frame off after it)."""
    edges = np.diff(np.concatenate(([0], on.astype(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [
        (float(times[a]), float(times[b]) if b < len(times) else None)
        for a, b in zip(starts.tolist(), stops.tolist(), strict=True)
    ]


def episodes(finding: dict[str, Any]) -> list[tuple[float, float | None]]:
    return [
        (e["start"] - T0, None if e["end"] is None else e["end"] - T0) for e in finding["episodes"]
    ]


def within(found: list[tuple[float, float | None]], truth: list[Any], tol: float) -> bool:
    if len(found) != len(truth):
        return False
    return all(
        abs(f[0] - t[0]) <= tol
        and f[1] is not None
        and t[1] is not None
        and abs(f[1] - t[1]) <= tol
        for f, t in zip(found, truth, strict=True)
    )


def flat(findings: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for f in findings:
        out[(f["code"], f["subject"])] = f
        out.update(flat(f.get("consequences", [])))
    return out


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("signals")
    capture = folder / "cooling_meter.log"
    args = ["simulate", "-o", str(capture), "-d", "400", "--seed", "11"]
    for start, length in NO_FLOW:
        args += ["--fault", f"cooling_no_flow@{start}+{length}"]
    for start, length in REVERSED:
        args += ["--fault", f"meter_reversed@{start}+{length}"]
    assert main(args) == 0
    out = folder / "report.json"
    main(["analyze", str(capture), "--json", str(out)])
    return capture, json.loads(out.read_text())


@pytest.mark.slow
def test_no_flow_and_overtemperature_episodes_within_a_second(
    faulty: tuple[Path, dict[str, Any]],
) -> None:
    capture, report = faulty
    found = flat(report["findings"])
    frames = decoded(capture, {"CoolingStatus", "CoolingActuators"})
    t_status, status = frames["CoolingStatus"]
    t_act, act = frames["CoolingActuators"]
    flow = np.array([v["CoolantFlow"] for v in status])
    pump = np.array([v["PumpSpeedCommand"] for v in act]) / 100.0
    pump_at = pump[np.clip(np.searchsorted(t_act, t_status, side="right") - 1, 0, None)]
    no_flow = truth_runs(t_status, (pump_at >= 0.2) & (flow < 1.0))
    assert len(no_flow) == 3  # one stretch per injection, late, as injected
    assert all(a > 120 for a, _ in no_flow)
    got = episodes(found[("COOLING_NO_FLOW", "can0/cooling")])
    assert within(got, no_flow, 1.0), (got, no_flow)

    hot = np.array([v["CoolantOutletTemperature"] for v in status]) >= 55.0
    got = episodes(found[("COOLING_OVERTEMP", "can0/cooling")])
    assert within(got, truth_runs(t_status, hot), 1.0), (got, truth_runs(t_status, hot))

    # The cooling unit's own over-temperature bit: exact to its frames.
    bit = np.array([v["OverTemperatureAlarm"] for v in status]) != 0
    got = episodes(found[("CAN_NODE_ALARM_TEMP", "can0/cooling/0")])
    want = truth_runs(t_status, bit)
    assert len(got) == len(want) == 3
    assert np.allclose(np.array(got, float), np.array(want, float), atol=1e-6), (got, want)


@pytest.mark.slow
def test_reversed_meter_episodes_within_a_second_of_the_injection(
    faulty: tuple[Path, dict[str, Any]],
) -> None:
    capture, report = faulty
    finding = flat(report["findings"])[("METER_REVERSED", "can0/dc_meter")]
    frames = decoded(capture, {"Meter_Current"})
    t_meter, meter = frames["Meter_Current"]
    negative = np.array([v["Current"] for v in meter]) <= -5.0
    truth = truth_runs(t_meter, negative)
    injected = [(a, a + n) for a, n in REVERSED]
    assert within(truth, injected, 0.2)  # the simulator charges through every window
    assert within(episodes(finding), truth, 1.0), (episodes(finding), truth)
    assert finding["evidence"]["meter_current_a"] <= -5.0
    assert finding["evidence"]["modules_output_a"] >= 5.0


@pytest.mark.slow
def test_healthy_sessions_raise_no_signal_finding(tmp_path: Path) -> None:
    capture = tmp_path / "healthy.log"
    assert main(["simulate", "-o", str(capture), "-d", "600", "--seed", "4", "--modules", "4"]) == 0
    out = tmp_path / "healthy.json"
    assert main(["analyze", str(capture), "--json", str(out), "--fail-on", "warning"]) == 0
    report = json.loads(out.read_text())
    assert {code for code, _ in flat(report["findings"])} & SIGNAL_CODES == set()
    # The evidence was there to judge: cooling and currents were read.
    signals = report["signals"]
    assert any(k.startswith("CoolingStatus.CoolantFlow") for k in signals)
    assert any(k.startswith("Meter_Current.Current") for k in signals)


@pytest.mark.slow
def test_python_can_logs_give_no_signal_finding() -> None:
    """Logs nobody here wrote (python-can's test data), analyzed with the reference DBCs:
    none of their frames carries a role the signal rules read, so none may be claimed
    (nothing read is never a fault)."""
    from candiag.analysis import analyze_capture
    from tests.realworld import HOW, pycan_dir

    folder = pycan_dir()
    if folder is None:
        pytest.skip(HOW)
    logs = sorted(p for p in folder.iterdir() if p.suffix in (".asc", ".blf", ".trc", ".log"))
    assert logs
    for log in logs:
        report = analyze_capture(log).report.to_json()
        codes = {code for code, _ in flat(report["findings"])}
        assert codes & SIGNAL_CODES == set(), log.name


@pytest.mark.slow
def test_overtemperature_is_folded_under_the_missing_flow(
    faulty: tuple[Path, dict[str, Any]],
) -> None:
    """The causal model: no flow is the cause, the heat it brings its consequence."""
    _, report = faulty
    top = {(f["code"], f["subject"]): f for f in report["findings"]}
    cause = top[("COOLING_NO_FLOW", "can0/cooling")]
    folded = {(c["code"], c["subject"]) for c in cause.get("consequences", [])}
    assert folded == {
        ("COOLING_OVERTEMP", "can0/cooling"),
        ("CAN_NODE_ALARM_TEMP", "can0/cooling/0"),
    }
    assert report["findings"][0]["code"] == "COOLING_NO_FLOW"
