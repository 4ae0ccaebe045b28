"""hil/test_hil.py itself, run against a vxcan pair: two SocketCAN "adapters" on one bus.

The HIL suite is written for real adapters; here it runs for real on the kernel's
vxcan tunnel (SIM on vxcan0, DUT on vxcan1), so its plumbing (recorder, simulator,
analyze) is proven before it meets a bench.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The checks sharing the healthy run (one recorder, one simulator, one analyze).  Left to
# the bench: link state and bitrate (vxcan has no controller), the fault and monitor runs,
# and the idle-bus witness (test_simulate_monitor.py proves that one on vcan0).
SELECTED = (
    "test_dut_hears_exactly_what_the_simulator_sent or test_healthy_bench_has_zero_error_frames"
    " or test_every_simulated_node_is_present_with_consistent_firmware"
)


def test_hil_suite_passes_on_a_vxcan_pair(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CANDIAG_HIL_SIM_IFACE": "socketcan",
        "CANDIAG_HIL_SIM_CHANNEL": "vxcan0",
        "CANDIAG_HIL_DUT_IFACE": "socketcan",
        "CANDIAG_HIL_DUT_CHANNEL": "vxcan1",
        "CANDIAG_HIL_BITRATE": "125000",
    }
    done = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-v", "-rs", "-p", "no:cacheprovider",
            f"--basetemp={tmp_path / 'hil'}", "-k", SELECTED, str(REPO / "hil" / "test_hil.py"),
        ],
        capture_output=True, text=True, timeout=400, check=False, cwd=REPO, env=env,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert re.search(r"\b3 passed\b", out), out
    assert "skipped" not in out, out
