"""A chunk of a capture spanning more than the trackers' one-hour rings loses nothing.

``analyze`` reads a capture in chunks of up to 262,144 lines; a thin stretch after a fault
puts hours into one chunk.  The per-second rings hold an hour: a batch longer than that is
taken whole, its seconds older than the new window going straight to history with their
frames, error classes and load counted (``SecondRing.add``, ``BusWindows.update``; an
adversarial review found ACK errors and a load burst lost when they were added apart).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_runs import analyze_report, simulate_capture


def _time(line: str) -> float:
    return float(line[1 : line.index(")")])


@pytest.mark.slow
def test_ack_errors_before_two_thin_hours_in_one_chunk_are_found(tmp_path: Path) -> None:
    busy = simulate_capture(tmp_path / "busy.log", 60, "error_frames@5+20:class=ack,rate=20")
    lines = [ln for ln in busy.read_text().splitlines() if ln.startswith("(")]
    imd = next(ln.split(")", 1)[1] for ln in lines if " 037#" in ln)
    end = _time(lines[-1])
    thin = [f"({end + 0.5 + i:.6f}){imd}" for i in range(7200)]  # one IMD frame a second, 2 h
    capture = tmp_path / "ack_then_two_hours.log"
    capture.write_text("\n".join(lines + thin) + "\n")
    report = analyze_report(capture)
    ack = [f for f in report["findings"] if f["code"] == "CAN_ERR_ACK"]
    assert len(ack) == 1, [f["code"] for f in report["findings"]]
    start = _time(lines[0])
    (episode,) = ack[0]["episodes"]
    assert start + 4 <= episode["start"] <= start + 6
    assert episode["end"] is not None and start + 24 <= episode["end"] <= start + 27
    load = report["bus_load"]
    assert load["max_ratio_1s"] >= load["mean_ratio"]  # the busy minute is counted
