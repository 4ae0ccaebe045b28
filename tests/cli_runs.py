"""The real command line run as a technician runs it, for end-to-end tests: a capture
simulated into a file, and ``analyze``'s JSON report of a capture (subprocesses, bounded)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "candiag"]


def simulate_capture(path: Path, seconds: float, *faults: str) -> Path:
    """``candiag simulate -o PATH -d SECONDS --fault F ...``"""
    args = [arg for fault in faults for arg in ("--fault", fault)]
    subprocess.run([*CLI, "simulate", "-q", "-o", str(path), "-d", str(seconds), *args],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    return path


def analyze_report(capture: Path, timeout: float = 300) -> dict[str, Any]:
    """``candiag analyze CAPTURE --json - -q``'s report."""
    out = subprocess.run([*CLI, "analyze", str(capture), "--json", "-", "-q"],
                         capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip
    report: dict[str, Any] = json.loads(out.stdout)
    return report
