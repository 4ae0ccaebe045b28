"""A 15-second ``make soak``: the harness and its criteria work end to end (the real soak is long)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_soak_smoke() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "soak", "--minutes", "0.25", "--warmup", "3", "--period", "5"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    table = done.stdout
    assert done.returncode == 0, table + done.stderr[-3000:]
    for criterion in (
        "frames counted == sent",
        "scrapes answered 200",
        "RSS growth after warm-up",
        "threads after warm-up",
        "fds after warm-up",
        "longest watchdog gap",
        "SIGTERM exit",
    ):
        row = next(line for line in table.splitlines() if line.startswith(criterion))
        assert row.endswith(" ok"), row
    # The faults really happened: the bus-off of the first fault cycle was seen.
    bus_offs = next(line for line in table.splitlines() if line.startswith("bus-off events seen"))
    assert int(bus_offs.split()[3]) >= 1, bus_offs
