"""``candiag analyze`` tells the truth on inputs it did not make (issue 12, items 1, 3-5, 7, 8, 11).

Each test builds the smallest input that showed a wrong answer and runs the real CLI.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from candiag.analysis import analyze_capture
from candiag.cli import main
from candiag.decode.dbc import load_reference_database


def analyze(capture: Path, *args: str, code: int = 0) -> dict[str, Any]:
    out = capture.with_name(capture.name + ".json")
    assert main(["analyze", str(capture), "--json", str(out), *args]) == code
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def id_counts(report: dict[str, Any]) -> int:
    return sum(int(entry["count"]) for entry in report["ids"].values())


# -- item 1: several channels ---------------------------------------------------------------


def test_each_channel_keeps_its_own_id_counts(tmp_path: Path) -> None:
    capture = write(
        tmp_path / "two.log",
        ["(1.0) can0 123#01", "(1.5) can0 123#01", "(2.0) can1 123#02"],
    )
    report = analyze(capture)
    entries = {(e["channel"], e["id"]): e["count"] for e in report["ids"].values()}
    assert entries == {("can0", "0x123"): 2, ("can1", "0x123"): 1}
    frames = report["frames"]
    assert id_counts(report) == frames["data"] + frames["remote"] == 3
    assert report["capture"]["channels"] == ["can0", "can1"]
    assert set(report["buses"]) == {"can0", "can1"}


def test_each_channel_is_a_bus_of_its_own(tmp_path: Path) -> None:
    """Two channels at 60 % each are two buses at 60 %, not one at 120 %."""
    lines = []
    gap = 0.0018  # an 8-byte standard frame (~111-135 bits) every 1.8 ms at 125 kbit/s
    for k in range(2000):
        t = 1000.0 + k * gap
        lines.append(f"({t:.6f}) can0 123#1122334455667788")
        lines.append(f"({t + gap / 2:.6f}) can1 456#1122334455667788")
    report = analyze(write(tmp_path / "busy.log", lines), "--bitrate", "125000")
    channels = report["bus_load"]["channels"]
    assert set(channels) == {"can0", "can1"}
    for load in channels.values():
        assert 0.4 < load["mean_ratio"] < 0.7
    assert report["bus_load"]["mean_ratio"] <= 1.0


# -- item 3: nothing read is not nothing wrong ------------------------------------------------


def test_a_capture_with_line_number_prefixes_is_refused_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = write(
        tmp_path / "numbered.log",
        [f"{n}: ({1000 + n / 10:.6f}) can0 123#0102" for n in range(1, 200)],
    )
    assert main(["analyze", str(capture), "--fail-on", "warning"]) == 2
    captured = capsys.readouterr()
    assert "No findings" not in captured.out
    assert "line number" in captured.err and "sed" in captured.err


def test_a_capture_of_unreadable_lines_is_a_critical_finding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = write(tmp_path / "other.log", [f"hello world {n}" for n in range(200)])
    report = analyze(capture, "--fail-on", "warning", code=1)
    assert "No findings" not in capsys.readouterr().out
    assert report["findings"][0]["code"] == "CAPTURE_UNREADABLE"
    assert report["findings"][0]["severity"] == "critical"
    assert report["capture"]["malformed_lines"] == 200
    assert not any("does not match the reference" in n for n in report["notes"])


def test_a_mostly_malformed_capture_is_critical_and_the_rest_survives(tmp_path: Path) -> None:
    good = [f"({1000 + n / 100:.6f}) can0 123#0102" for n in range(300)]
    bad = [f"junk line {n}" for n in range(700)]
    report = analyze(write(tmp_path / "mixed.log", good + bad), "--fail-on", "critical", code=1)
    assert report["findings"][0]["code"] == "CAPTURE_MOSTLY_MALFORMED"
    assert report["frames"]["data"] == 300


def test_a_few_malformed_lines_are_a_warning_only_when_they_matter(tmp_path: Path) -> None:
    good = [f"({1000 + n / 100:.6f}) can0 123#0102" for n in range(1000)]
    one_bad = [*good[:500], "garbage", *good[500:]]
    report = analyze(write(tmp_path / "one.log", one_bad))
    assert all(not f["code"].startswith("CAPTURE_") for f in report["findings"])
    assert report["capture"]["malformed_lines"] == 1
    many_bad = [line if n % 20 else "garbage" for n, line in enumerate(good)]
    report = analyze(write(tmp_path / "many.log", many_bad))
    assert report["findings"][0]["code"] == "CAPTURE_INCOMPLETE"


# -- item 4: load is physical -----------------------------------------------------------------


def test_a_very_short_capture_has_no_load_figure_and_says_why(tmp_path: Path) -> None:
    capture = write(
        tmp_path / "short.log",
        [
            "(1.000000) can0 123#1122334455667788",
            "(1.000150) can0 124#1122334455667788",
            "(1.000307) can0 125#1122334455667788",
        ],
    )
    load = analyze(capture, "--bitrate", "500000")["bus_load"]
    assert load["mean_ratio"] is None
    assert "too short" in load["note"]
    assert load["max_ratio_1s"] <= 1.0


def test_bunched_timestamps_never_give_a_load_over_100_percent(tmp_path: Path) -> None:
    # 5000 8-byte frames stamped within one second: more than 125 kbit/s can carry.
    rng = np.random.default_rng(1)
    stamps = np.sort(1000.0 + rng.random(5000) * 0.9)
    lines = [f"({t:.6f}) can0 1{k % 100:02X}#1122334455667788" for k, t in enumerate(stamps)]
    lines.append("(1010.000000) can0 123#00")
    load = analyze(write(tmp_path / "bunched.log", lines), "--bitrate", "125000")["bus_load"]
    assert load["mean_ratio"] <= 1.0
    assert load["max_ratio_1s"] <= 1.0
    assert load["overfull_seconds"] >= 1
    assert "not bus time" in load["note"]


# -- item 5: reference DBCs only where the traffic matches them -------------------------------


def _vehicle_capture(path: Path, seconds: float = 30.0) -> Path:
    """Traffic of a vehicle bus: its own ids (incl. the reference's 0x300/0x301 and 0x200)
    with other lengths, periods and payloads."""
    rng = random.Random(7)
    streams = [(0x300, 0.010, 8), (0x301, 0.020, 8), (0x200, 0.050, 6), (0x1A0, 0.010, 8)]
    streams += [(0x400 + k, 0.1, 8) for k in range(10)]
    lines = []
    for can_id, period, dlc in streams:
        t = 1000.0 + rng.random() * period
        while t < 1000.0 + seconds:
            data = "".join(f"{rng.randrange(256):02X}" for _ in range(dlc))
            lines.append((t, f"({t:.6f}) can0 {can_id:03X}#{data}"))
            t += period * (1 + rng.uniform(-0.02, 0.02))
    lines.sort()
    return write(path, [text for _, text in lines])


def test_a_vehicle_bus_is_not_decoded_with_the_charger_dbcs(tmp_path: Path) -> None:
    report = analyze(_vehicle_capture(tmp_path / "vehicle.log"))
    assert report["nodes"] == []
    assert not any(f["code"] == "CAN_CYCLE_VIOLATION" for f in report["findings"])
    dbc = report["decode"]["dbc"]
    assert dbc["files"] == []
    assert {m["file"] for m in dbc["reference"]} >= {"cooling.dbc", "contactors.dbc"}
    assert not any(m["matched"] for m in dbc["reference"])
    assert any("does not match the reference" in n for n in report["notes"])


def test_the_reference_charger_is_recognized_file_by_file(tmp_path: Path) -> None:
    capture = tmp_path / "charger.log"
    assert main(["simulate", "-o", str(capture), "-d", "60"]) == 0
    dbc = analyze(capture)["decode"]["dbc"]
    assert {m["file"] for m in dbc["reference"] if m["matched"]} == {
        "contactors.dbc",
        "cooling.dbc",
        "dc_meter.dbc",
        "insulation_monitor.dbc",
        "power_module.dbc",
    }
    assert len(dbc["files"]) == 5


# -- item 7: a gap is a gap in the plot ------------------------------------------------------


@pytest.mark.slow
def test_the_html_report_survives_a_module_dropout(tmp_path: Path) -> None:
    capture = tmp_path / "dropout.log.gz"
    assert (
        main(
            [
                "simulate",
                "-o",
                str(capture),
                "-d",
                "900",
                "--fault",
                "module_silent@300+120:module=3",
            ]
        )
        == 0
    )
    html = tmp_path / "r.html"
    assert main(["analyze", str(capture), "--bitrate", "125000", "--html", str(html)]) == 0
    text = html.read_text()
    assert "power module 3" in text and "</html>" in text


# -- item 8: a multiplexed signal is averaged over its own frames ---------------------------


def test_multiplexed_temperatures_are_not_mixed_with_other_registers(tmp_path: Path) -> None:
    capture = tmp_path / "mux.log"
    assert main(["simulate", "-o", str(capture), "-d", "60"]) == 0
    result = analyze_capture(capture, load_reference_database(), bitrate=125_000, keep_history=True)
    assert result.timeline is not None and result.timeline.signals is not None
    temperatures = result.timeline.signals["Temperature (degC)"]
    ambient = [v for series in temperatures.values() for v in series if v == v]
    assert ambient and max(ambient) < 100.0  # not ~214 °C: no 400 V register in the mean


# -- item 11: an extended identifier keeps its width -----------------------------------------


def test_extended_ids_keep_eight_digits_everywhere(tmp_path: Path) -> None:
    capture = write(
        tmp_path / "ext.log",
        [f"({1000 + k / 10:.6f}) can0 00000285#0102" for k in range(20)]
        + [f"({1000.05 + k / 10:.6f}) can0 285#0102" for k in range(20)],
    )
    report = analyze(capture)
    ids = {e["id"]: e["extended"] for e in report["ids"].values()}
    assert ids == {"0x00000285": True, "0x285": False}
    assert set(report["decode"]["unknown_ids"]) == {"0x00000285", "0x285"}


# -- item 6: the bitrate is known, inferred, or said to be assumed ----------------------------


def test_a_candiag_recording_is_analyzed_at_its_recorded_bitrate(tmp_path: Path) -> None:
    capture = tmp_path / "rec125.log.gz"
    assert main(["simulate", "-o", str(capture), "-d", "60", "-b", "125000"]) == 0
    report = analyze(capture)
    assert report["bitrate"]["bitrate"] == 125_000
    assert report["bitrate"]["source"] == "recording"
    assert report["bus_load"]["bitrate"] == 125_000
    assert 0.2 < report["bus_load"]["mean_ratio"] < 0.3  # ~24 %, not 6 % at an assumed 500k


def test_a_plain_capture_of_a_busy_bus_gets_its_bitrate_inferred(tmp_path: Path) -> None:
    capture = tmp_path / "rec250.log"
    assert main(["simulate", "-o", str(capture), "-d", "60", "-b", "250000"]) == 0
    for sidecar in tmp_path.glob("*.meta.json"):
        sidecar.unlink()  # only the frames remain: their spacing must tell the rate
    report = analyze(capture)
    assert report["bitrate"]["source"] == "inferred"
    assert report["bitrate"]["bitrate"] == 250_000


def test_an_assumed_bitrate_is_marked_everywhere_and_never_an_instruction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = tmp_path / "wrongrate.log"
    assert main(["simulate", "-o", str(capture), "-d", "60", "--scenario", "wrong_bitrate"]) == 0
    for sidecar in tmp_path.glob("*.meta.json"):
        sidecar.unlink()
    # Keep one frame in twenty: too sparse to infer a rate from, errors still in bursts.
    lines = capture.read_text().splitlines()
    thin = [line for k, line in enumerate(lines) if k % 20 == 0 or line.split()[-1][:6] == "200000"]
    capture.write_text("\n".join(thin) + "\n")
    html = tmp_path / "r.html"
    report = analyze(capture, "--html", str(html))
    assert report["bitrate"]["source"] == "assumed" and not report["bitrate"]["known"]
    assert "ASSUMED" in capsys.readouterr().out
    assert "assumed, not known" in html.read_text()
    wrong = [f for f in report["findings"] if f["code"] == "CAN_WRONG_BITRATE"]
    assert wrong, [f["code"] for f in report["findings"]]
    assert "does not know this bus's bitrate" in wrong[0]["fix"]
    for finding in report["findings"]:
        assert "bit/s)" not in finding["fix"], finding
    assert not [f for f in report["findings"] if f["code"] == "CAN_LOAD_HIGH"]


def test_the_reference_charger_is_recognized_when_its_timestamps_come_in_bursts(
    tmp_path: Path,
) -> None:
    """A host that stamps frames in bursts (a live sender every 20 ms, a loaded VM)
    scatters the intervals, not the mean periods the identification judges."""
    capture = tmp_path / "charger.log"
    assert main(["simulate", "-o", str(capture), "-d", "30"]) == 0
    lines = []
    for line in capture.read_text().splitlines():
        stamp, rest = line.split(")", 1)
        t = float(stamp[1:])
        lines.append(f"({(t // 0.05) * 0.05:.6f}){rest}")  # 50 ms bursts, equal stamps
    bursty = write(tmp_path / "bursty.log", lines)
    dbc = analyze(bursty, "--bitrate", "125000")["decode"]["dbc"]
    assert all(m["matched"] for m in dbc["reference"]), dbc["reference"]
