"""bench_fleet: its counting on a known exposition, and a quick run end to end.

No figure is asserted beyond what must hold for any run (speed and sizes are reported by
``make bench``); the quick run proves the benchmark still works.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
from external_tools import require_tool

REPO = Path(__file__).resolve().parent.parent

EXPOSITION = """\
# HELP candiag_can_id_frames_total Frames per identifier.
# TYPE candiag_can_id_frames_total counter
candiag_can_id_frames_total{bus="can0",id="0x201"} 51.0
candiag_can_id_frames_total{bus="can0",id="overflow"} 0.0
# HELP candiag_can_node_up 1 while the node is seen.
# TYPE candiag_can_node_up gauge
candiag_can_node_up{bus="can0",family="power_module",node="1"} 1.0
candiag_modbus_request_duration_seconds_bucket{device="m",le="0.1",port="p"} 3.0
candiag_build_info{version="0"} 1.0
"""


def bench_fleet() -> ModuleType:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))  # bench/ is a top-level package of the repository
    return importlib.import_module("bench.bench_fleet")


def test_series_are_counted_by_family_without_comments() -> None:
    counts = bench_fleet().series_by_family(EXPOSITION)
    assert counts == {
        "candiag_can_id_frames_total": 2,
        "candiag_can_node_up": 1,
        "candiag_modbus_request_duration_seconds_bucket": 1,
        "candiag_build_info": 1,
    }


def test_sent_series_follow_the_shipped_agent() -> None:
    bench = bench_fleet()
    counts = bench.series_by_family(EXPOSITION)
    # The shipped agent drops the per-identifier counters and adds up + 4 scrape_* series.
    assert bench.sent_series(counts) == 3 + 5


def test_module_growth_is_a_least_squares_line() -> None:
    from collections import Counter

    bench = bench_fleet()
    counts = {n: Counter({"x": 183 + 45 * n}) for n in (1, 8, 16)}
    slope, intercept = bench.module_growth(counts)
    assert slope == pytest.approx(45) and intercept == pytest.approx(183)


@pytest.mark.slow
def test_quick_bench_runs(capsys: pytest.CaptureFixture[str]) -> None:
    require_tool("prometheus")
    bench_fleet().main(["--quick", "--chargers", "1", "--intervals", "2"])
    out = capsys.readouterr().out
    assert re.search(r"8 modules, without meters: \d+ series exposed", out)
    assert re.search(r"N=1: \d+, N=8: \d+ series -> [\d.]+ series per module", out)
    assert re.search(r"samples/s per 1,000 chargers at the shipped 30 s interval: [\d,]+", out)
    match = re.search(r"compressed payload ([\d.]+) B/sample, HTTP on the wire ([\d.]+)", out)
    assert match, out
    # HTTP carries the compressed body plus headers.
    assert float(match.group(2)) > float(match.group(1)) > 0
