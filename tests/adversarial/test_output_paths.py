"""An output path that is an input never destroys the capture (issue 13 §1 item 11), and a
path that cannot be written is refused before the work starts (issue 17 §1)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.adversarial.bounded import run_bounded

LINES = "".join(f"({1000 + k / 10:.6f}) can0 123#0102\n" for k in range(50))


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    path = tmp_path / "b.log"
    path.write_text(LINES)
    return path


@pytest.mark.parametrize("option", ["--json", "--html"])
def test_analyze_refuses_to_write_over_its_input(capture: Path, option: str) -> None:
    result = run_bounded(["analyze", str(capture), option, str(capture)])
    assert result.code == 2
    assert "would destroy the capture" in result.stderr
    assert capture.read_text() == LINES


def test_a_hard_link_to_the_input_is_the_input(capture: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.json"
    os.link(capture, link)
    result = run_bounded(["analyze", str(capture), "--json", str(link)])
    assert result.code == 2 and "would destroy the capture" in result.stderr
    assert capture.read_text() == LINES


def test_a_missing_output_folder_is_refused_before_the_analysis(capture: Path) -> None:
    result = run_bounded(["analyze", str(capture), "--html", "/nonexistent/dir/r.html"])
    assert result.code == 2
    assert "does not exist" in result.stderr and "free disk" not in result.stderr
    assert "frames over" not in result.stdout  # refused before any analysis was printed
