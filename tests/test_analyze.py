"""``candiag analyze`` end to end on simulated captures with known content, and the scenario suite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from candiag.analysis import analyze_capture
from candiag.cli import main
from candiag.decode.dbc import ChargerDatabase, load_reference_database
from candiag.health.errorframes import ERROR_CLASSES

BITRATE = 125_000  # the simulator's reference bus


@pytest.fixture(scope="module")
def db() -> ChargerDatabase:
    return load_reference_database()


def simulate(path: Path, seconds: float, *args: str) -> Path:
    assert main(["simulate", "--output", str(path), "--duration", str(seconds), *args]) == 0
    return path


def analyze_json(capture: Path, *args: str) -> dict[str, Any]:
    out = capture.with_suffix(".json")
    assert (
        main(["analyze", str(capture), "--bitrate", str(BITRATE), "--json", str(out), *args]) == 0
    )
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def test_known_error_frames_are_counted_exactly(tmp_path: Path) -> None:
    capture = simulate(
        tmp_path / "errors.log",
        30,
        "--fault",
        "error_frames@10+5:class=ack,rate=20",
        "--fault",
        "error_frames@20+2:class=stuff,rate=10",
    )
    report = analyze_json(capture)
    assert set(report["error_frames"]["by_class"]) == set(ERROR_CLASSES)
    by_class = report["error_frames"]["by_class"]
    assert by_class["ack"] == 100
    assert by_class["protocol"] == 20
    assert by_class["bus_error"] == 120
    assert report["error_frames"]["protocol_type"] == {"stuff": 20}
    frames = report["frames"]
    assert frames["error"] == 120
    assert frames["data"] + frames["remote"] + frames["error"] == frames["total"]
    assert report["capture"]["frames"] == frames["total"]
    assert report["bus_off_events"] == 0
    assert report["findings"][0]["code"] == "CAN_ERR_ACK"


def test_json_has_the_documented_keys_and_consistent_figures(tmp_path: Path) -> None:
    capture = simulate(tmp_path / "healthy.log", 60)
    lines = capture.read_text().splitlines()
    report = analyze_json(capture)
    cap = report["capture"]
    assert {"path", "frames", "malformed_lines", "start", "end", "duration_s"} <= set(cap)
    assert cap["frames"] == len(lines) and cap["malformed_lines"] == 0
    assert cap["duration_s"] == pytest.approx(cap["end"] - cap["start"])
    for key in ("frames", "error_frames", "bus_off_events", "bus_load", "ids", "nodes", "signals"):
        assert key in report
    assert report["findings"] == []
    load = report["bus_load"]
    assert load["bitrate"] == BITRATE
    assert 0.1 < load["mean_ratio"] <= load["max_ratio_1s"] < 1.0
    assert {n["status"] for n in report["nodes"]} == {"online"}
    assert sum(1 for n in report["nodes"] if n["family"] == "power_module") == 8
    voltage = report["signals"]["ModuleTelemetry.OutputVoltage[1]"]
    assert voltage["unit"] == "V" and voltage["max"] > 300


def test_mean_load_is_all_frame_bits_over_bitrate_times_span(
    tmp_path: Path, db: ChargerDatabase
) -> None:
    from candiag.capture import read_capture
    from tests.can_bitstream import frame_bits_reference

    capture = simulate(tmp_path / "load.log", 20)
    batch, _ = read_capture(capture)
    per_frame = [
        frame_bits_reference(
            int(batch.can_id[i]),
            extended=bool(batch.is_extended[i]),
            remote=bool(batch.is_remote[i]),
            dlc=int(batch.dlc[i]),
            data=bytes(batch.data[i, : batch.dlc[i]]),
        )[0]
        for i in range(len(batch))
    ]
    bits = sum(per_frame)
    # Receivers stamp a frame when it ends: the span starts one first-frame length earlier.
    first = int(batch.timestamp.argmin())
    span = float(batch.timestamp.max() - batch.timestamp.min()) + per_frame[first] / BITRATE
    result = analyze_capture(capture, db, bitrate=BITRATE)
    assert result.report.bus_load.mean_ratio == pytest.approx(bits / (BITRATE * span), rel=1e-5)


def test_malformed_lines_are_counted_not_fatal(tmp_path: Path) -> None:
    capture = simulate(tmp_path / "ok.log", 5)
    text = capture.read_text().splitlines()
    text.insert(3, "this is not a candump line")
    text.insert(10, "(1700000001.0) can0 12345#GG")
    broken = tmp_path / "broken.log"
    broken.write_text("\n".join(text) + "\n")
    report = analyze_json(broken)
    assert report["capture"]["malformed_lines"] == 2
    assert [m["line"] for m in report["capture"]["malformed_examples"]] == [4, 11]
    assert report["capture"]["frames"] == len(text) - 2


@pytest.mark.slow
def test_cli_in_a_subprocess_prints_summary_and_html(tmp_path: Path) -> None:
    capture = simulate(tmp_path / "off.log", 40, "--scenario", "module_offline")
    html = tmp_path / "report.html"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "candiag",
            "analyze",
            str(capture),
            "--bitrate",
            str(BITRATE),
            "--html",
            str(html),
            "--fail-on",
            "critical",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr  # --fail-on critical: a module went offline
    assert "power module 3 stopped transmitting" in proc.stdout
    assert "fix:" in proc.stdout
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "CAN_NODE_OFFLINE" in page and "<svg" in page
    # Self-contained: no external scripts, styles, images or fonts.
    assert "src=" not in page and "<link" not in page and "@import" not in page


def test_unreadable_capture_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", str(tmp_path / "missing.log")]) == 2
    assert "missing.log" in capsys.readouterr().err


# -- the scenario suite: the most severe finding names the injected cause ------------------

SCENARIOS = {
    # scenario: (expected top finding code, subject contains, fault start s)
    "termination": ("CAN_ERR_PHY", "can", 10.0),
    "wrong_bitrate": ("CAN_WRONG_BITRATE", "can", 10.0),
    "module_offline": ("CAN_NODE_OFFLINE", "power_module/3", 10.0),
    "duplicate_address": ("CAN_NODE_DUPLICATE", "power_module/2", 10.0),
    "firmware_mismatch": ("CAN_FW_MISMATCH", "power_module", 0.0),
    "bus_off": ("CAN_BUS_OFF", "can", 10.0),
    "overload": ("CAN_LOAD_HIGH", "can", 10.0),
    "contactor_mismatch": ("CONTACTOR_MISMATCH", "DCPlus", 20.0),
    "cooling_flow": ("COOLING_NO_FLOW", "cooling", 15.0),
    "jitter": ("CAN_CYCLE_VIOLATION", "F004", 10.0),
}


@pytest.mark.slow
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_scenario_top_finding_names_the_injected_cause(
    scenario: str, tmp_path: Path, db: ChargerDatabase
) -> None:
    code, subject, fault_start = SCENARIOS[scenario]
    capture = simulate(tmp_path / f"{scenario}.log", 90, "--scenario", scenario)
    result = analyze_capture(capture, db, bitrate=BITRATE)
    findings = result.report.findings
    assert findings, f"{scenario}: no finding"
    top = findings[0]
    assert (top.code, subject in top.subject) == (code, True), findings[:3]
    detect = result.first_detection[code] - fault_start
    assert 0 <= detect <= 30, f"{scenario}: detected {detect:.1f} s after the fault"
    print(f"SCENARIO {scenario}: {top.severity} {top.code} detected after {detect:.1f} s")


@pytest.mark.slow
def test_ten_minutes_of_healthy_traffic_give_no_warning(
    tmp_path: Path, db: ChargerDatabase
) -> None:
    capture = simulate(tmp_path / "healthy.log", 600, "--seed", "7")
    result = analyze_capture(capture, db, bitrate=BITRATE)
    serious = [f for f in result.report.findings if f.severity in ("critical", "warning")]
    assert serious == []
    assert result.evaluations == 1  # the rules run once, over the whole timelines


@pytest.mark.slow
def test_cycle_violation_clears_once_the_jitter_is_gone(
    tmp_path: Path, db: ChargerDatabase
) -> None:
    capture = simulate(tmp_path / "jitter.log", 800, "--fault", "jitter@10+120:module=4,ratio=0.9")
    result = analyze_capture(capture, db, bitrate=BITRATE)
    findings = [f for f in result.report.findings if f.code == "CAN_CYCLE_VIOLATION"]
    assert findings and all("F004" in f.subject for f in findings)
    assert all(f.cleared_at is not None for f in findings)  # judged on recent traffic
    module4 = [v for k, v in result.report.ids.items() if k.endswith("F004")]
    assert module4 and all(v.cycle_ok is not False for v in module4)


@pytest.mark.slow
def test_tour_shows_each_finding_appear_in_its_step_and_clear(
    tmp_path: Path, db: ChargerDatabase
) -> None:
    from candiag.sim.scenarios import tour_steps

    steps = [s for s in tour_steps() if s.scenario in SCENARIOS]  # the charger's steps
    capture = simulate(tmp_path / "tour.log", steps[-1].end + 60, "--scenario", "tour")
    result = analyze_capture(capture, db, bitrate=BITRATE)
    start = result.report.capture.start
    findings = [f.to_json() for f in result.report.findings]
    for step in steps:
        code = SCENARIOS[step.scenario][0]
        hits = [
            f
            for f in findings
            if f["code"] == code and step.start - 1 <= f["since"] - start <= step.end + 30
        ]
        assert hits, f"{step.scenario}: no {code} during its step"
    early = [s for s in steps if s.end + 120 < steps[-1].end]
    for step in early:  # long before the end of the tour: cleared again
        code = SCENARIOS[step.scenario][0]
        assert all(
            f.get("cleared_at") is not None
            for f in findings
            if f["code"] == code and step.start - 1 <= f["since"] - start <= step.end + 30
        ), f"{step.scenario}: {code} did not clear"
