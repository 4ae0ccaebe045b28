"""Timestamps that jump (issue 13 §1 item 3): segments, reported, at no cost per second of gap."""

from __future__ import annotations

import json
from pathlib import Path

from tests.adversarial.bounded import run_bounded

YEAR = 365.25 * 86400


def _lines(start: float, count: int, step: float = 0.1) -> list[str]:
    return [f"({start + k * step:.6f}) can0 123#0102030405060708" for k in range(count)]


def _analyze(tmp_path: Path, lines: list[str]) -> dict[str, object]:
    capture = tmp_path / "clock.log"
    capture.write_text("\n".join(lines) + "\n")
    out = tmp_path / "r.json"
    result = run_bounded(["analyze", str(capture), "--bitrate", "125000", "--json", str(out)])
    assert result.code == 0, result.stderr
    doc: dict[str, object] = json.loads(out.read_text())
    return doc


def test_a_controller_booting_at_1970_then_stepping_to_2023(tmp_path: Path) -> None:
    boot = _lines(120.0, 300)  # 1970-01-01 00:02:00
    synced = _lines(1_683_000_000.0, 300)  # 2023
    report = _analyze(tmp_path, boot + synced)
    events = report["capture"]["clock_events"]  # type: ignore[index]
    assert [e["kind"] for e in events] == ["step"]
    assert events[0]["frame"] == 300
    assert events[0]["seconds"] > 50 * YEAR
    assert "clock stepped +53.3 years after frame 300" in events[0]["text"]
    # The two segments are analyzed as one continuous recording of 60 s.
    assert report["capture"]["duration_s"] < 61  # type: ignore[index]
    assert report["frames"]["data"] == 600  # type: ignore[index]
    assert not [f for f in report["findings"] if f["code"] == "CAN_BUS_SILENT"]  # type: ignore[union-attr]


def test_one_zero_timestamp_among_real_ones(tmp_path: Path) -> None:
    lines = _lines(1_700_000_000.0, 200)
    lines.insert(100, "(0.000000) can0 123#0102030405060708")
    report = _analyze(tmp_path, lines)
    kinds = [e["kind"] for e in report["capture"]["clock_events"]]  # type: ignore[index]
    assert kinds == ["step", "step"]
    assert report["frames"]["data"] == 201  # type: ignore[index]
    assert report["capture"]["duration_s"] < 30  # type: ignore[index]


def test_a_day_of_silence_between_two_frames_is_a_gap_not_work(tmp_path: Path) -> None:
    lines = _lines(1_700_000_000.0, 50) + _lines(1_700_000_000.0 + 86_400, 50)
    report = _analyze(tmp_path, lines)
    events = report["capture"]["clock_events"]  # type: ignore[index]
    assert [e["kind"] for e in events] == ["gap"]
    assert "no frames for 24.0 h" in events[0]["text"]
    # A real silence stays in the timeline.
    assert report["capture"]["duration_s"] > 86_400  # type: ignore[index]


def test_a_step_back_by_an_hour_keeps_every_frame_in_the_windows(tmp_path: Path) -> None:
    lines = _lines(1_700_000_000.0, 300) + _lines(1_700_000_000.0 + 30 - 3600, 300)
    report = _analyze(tmp_path, lines)
    assert [e["kind"] for e in report["capture"]["clock_events"]] == ["step"]  # type: ignore[index]
    windows = report["windows"]["3600s"]  # type: ignore[index]
    assert windows["frames"] == 600
    assert not any("out of order" in n for n in report["notes"])  # type: ignore[union-attr]
