"""Coarse timestamps (a logger's 0.5 s or 1 s grid) do not fake two senders at one address.

A duplicate address doubles a node's arrival rate.  Over a few arrivals a timestamp grid
shortens the measured span by up to a grid step and doubles the rate by itself (an
adversarial review found every node reported duplicate on a 1 s grid): the rate is judged
over a full window of arrivals (``candiag/health/nodes.py``, ``RATE_TAIL``).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.cli_runs import analyze_report, simulate_capture


@pytest.mark.slow
@pytest.mark.parametrize("grid_s", [0.5, 1.0])
def test_a_healthy_capture_on_a_coarse_grid_has_no_duplicate(grid_s: float, tmp_path: Path) -> None:
    fine = simulate_capture(tmp_path / "fine.log", 60)
    lines = []
    for line in fine.read_text().splitlines():
        if line.startswith("("):
            t, rest = line[1:].split(")", 1)
            lines.append(f"({math.floor(float(t) / grid_s) * grid_s:.6f}){rest}")
    coarse = tmp_path / "coarse.log"
    coarse.write_text("\n".join(lines) + "\n")
    codes = {f["code"] for f in analyze_report(coarse, timeout=120)["findings"]}
    assert "CAN_NODE_DUPLICATE" not in codes, codes


@pytest.mark.slow
def test_a_real_duplicate_is_still_found(tmp_path: Path) -> None:
    capture = simulate_capture(tmp_path / "dup.log", 60, "duplicate_address@20+20:module=2")
    report = analyze_report(capture, timeout=120)
    found = [f for f in report["findings"] if f["code"] == "CAN_NODE_DUPLICATE"]
    assert [f["subject"] for f in found] == ["can0/power_module/2"]
