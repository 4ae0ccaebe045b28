"""The run is ordered fast first (tests/conftest.py), so ``pytest -x`` answers in seconds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SLOW_FOLDER, SLOW_MARKED, UNIT, run_group

REPO = Path(__file__).resolve().parents[1]


def test_this_session_runs_unit_then_slow_marked_then_slow_folders(
    request: pytest.FixtureRequest,
) -> None:
    groups = [run_group(item) for item in request.session.items]
    assert groups == sorted(groups)
    assert run_group(request.node) == UNIT


def test_named_files_are_reordered_whatever_the_command_line_order() -> None:
    files = ["tests/adversarial/test_output_paths.py", "tests/test_meter_scenarios.py"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    ids = [line for line in done.stdout.splitlines() if "::" in line]
    scenario = "tests/test_meter_scenarios.py::test_meter_scenario_top_finding_names_the_cause"
    order = [
        f"{scenario}[meter_crc_noise]",  # unit tests of the second file first
        f"{scenario}[meter_wrong_id]",  # its slow-marked case after them
        "tests/adversarial/",  # the slow folder, named first, last
    ]
    positions = [next(i for i, test in enumerate(ids) if test.startswith(p)) for p in order]
    assert positions == sorted(positions), ids
    assert (UNIT, SLOW_MARKED, SLOW_FOLDER) == (0, 1, 2)
