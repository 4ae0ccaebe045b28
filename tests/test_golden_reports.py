"""``candiag analyze --json`` of fixed captures, key for key and value for value.

The golden files under ``tests/data/golden/`` were written by the CLI before the reports
became typed dataclasses (:mod:`candiag.health.report`); the typed reports must serialize
to exactly the same JSON: the same keys, in the same order, with the same values.  Nothing
is normalised but where candiag is installed (the shipped reference DBCs are listed by their
path): each capture is analyzed from its own folder under a relative path, and the JSON holds
no wall-clock time or version.

The captures: the simulated reference charger (healthy, and six fault scenarios, 30 s each,
``candiag simulate --seed 7 --start-time 1700000000``), two simulated buses in one candump
file, a hand-damaged candump (malformed lines), and python-can's own test logs (ASC with
several channels and error frames, BLF, TRC; MIT, see tests/data/LICENSES.md).

After an intended change of the JSON, rewrite the files with
``CANDIAG_WRITE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden_reports.py`` and
review the diff (``zcat``) before committing it.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import candiag

PACKAGE = str(Path(candiag.__file__).resolve().parent)
DATA = Path(__file__).resolve().parent / "data"
GOLDEN = DATA / "golden"
CAPTURES = GOLDEN / "captures"

# name -> (folder to run in, capture path relative to it, extra analyze arguments)
CASES: dict[str, tuple[Path, str, tuple[str, ...]]] = {
    "sim_healthy_125k": (CAPTURES, "sim_healthy.log.gz", ("--bitrate", "125000")),
    "sim_healthy": (CAPTURES, "sim_healthy.log.gz", ()),
    **{
        f"sim_{s}": (CAPTURES, f"sim_{s}.log.gz", ())
        for s in (
            "bus_off",
            "module_offline",
            "wrong_bitrate",
            "contactor_mismatch",
            "firmware_mismatch",
            "cooling_flow",
        )
    },
    "two_buses": (CAPTURES, "two_buses.log.gz", ()),
    "hostile": (CAPTURES, "hostile.log", ()),
    "pycan_logfile_asc": (DATA, "pycan/logfile.asc", ()),
    "pycan_errorframes_asc": (DATA, "pycan/test_CanErrorFrames.asc", ()),
    "pycan_errorframe_blf": (DATA, "pycan/test_CanErrorFrameExt.blf", ()),
    "pycan_trc": (DATA, "pycan/test_CanMessage_V2_1.trc", ()),
}


def analyze_json(folder: Path, capture: str, extra: tuple[str, ...]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "candiag", "analyze", capture, "--json", "-", *extra],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode in (0, 1), out.stderr  # 1: findings at --fail-on level
    return out.stdout.replace(json.dumps(PACKAGE)[1:-1], "<candiag>")


def first_difference(want: Any, got: Any, path: str = "$") -> str:
    """Where two JSON values first differ (keys and their order included)."""
    if isinstance(want, dict) and isinstance(got, dict):
        if list(want) != list(got):
            return f"{path}: keys {list(want)} != {list(got)}"
        for key in want:
            found = first_difference(want[key], got[key], f"{path}.{key}")
            if found:
                return found
        return ""
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return f"{path}: {len(want)} items != {len(got)}"
        for i, (a, b) in enumerate(zip(want, got, strict=True)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found:
                return found
        return ""
    if type(want) is not type(got) or want != got:
        if want != want and got != got:  # NaN is written as NaN both times
            return ""
        if isinstance(want, float) and isinstance(got, float):
            # The same figure summed in another order differs in its last bits; a change
            # of meaning does not hide below a billionth.
            if math.isclose(want, got, rel_tol=1e-9, abs_tol=1e-15):
                return ""
        return f"{path}: {want!r} != {got!r}"
    return ""


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_analyze_json_is_unchanged(name: str) -> None:
    folder, capture, extra = CASES[name]
    text = analyze_json(folder, capture, extra)
    golden = GOLDEN / f"{name}.json.gz"
    if os.environ.get("CANDIAG_WRITE_GOLDEN") == "1":
        with gzip.GzipFile(golden, "wb", mtime=0) as f:
            f.write(text.encode())
    want = json.loads(gzip.decompress(golden.read_bytes()))
    got = json.loads(text)
    assert first_difference(want, got) == ""


def test_first_difference_sees_order_type_and_value() -> None:
    assert first_difference({"a": 1, "b": 2}, {"b": 2, "a": 1}).startswith("$: keys")
    assert first_difference({"a": [1, 2]}, {"a": [1, 2.0]}) == "$.a[1]: 2 != 2.0"
    assert first_difference({"a": None}, {"a": 0}) == "$.a: None != 0"
    assert first_difference({"a": {"b": [1]}}, {"a": {"b": [1]}}) == ""
    # Floats summed in another order: equal below a billionth, different above.
    assert first_difference({"a": 1.0000005590504615}, {"a": 1.0000005590504613}) == ""
    assert first_difference({"a": 0.1}, {"a": 0.1000001}) == "$.a: 0.1 != 0.1000001"
