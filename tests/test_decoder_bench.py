"""Smoke test of the decode benchmark: ``bench_decode.main(["--quick"])`` runs end to end.

No timing is asserted (speed is proven by ``make bench``, never in unit tests); only that
every stage ran and reported its figures.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_bench_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))  # bench/ is a top-level package of the repository
    bench_decode = importlib.import_module("bench.bench_decode")
    bench_decode.main(["--quick", "--cache-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert re.search(r"\(a\) candiag CaptureReader \+ BatchDecoder: [\d,]+ frames/s", out)
    assert re.search(r"\(b\) python-can CanutilsLogReader \+ cantools decode_message: [\d,]+", out)
    assert re.search(r"ratio \(a\)/\(b\): [\d.]+x", out)
    assert re.search(r"100,000 frames streamed in chunks: .* peak RSS \d+ MB", out)
    assert re.search(
        r"JSON Lines, whole candiag decode work \(read \+ decode \+ format \+ write .*\): "
        r"[\d,]+ frames/s .* read\+decode [\d.]+ s, format\+write [\d.]+ s",
        out,
    )
    assert "40,000 lines (plain, and --units --choices) equal to one json.dumps per frame" in out
    assert re.search(
        r"candiag decode reference-\w+-20000.log -o /dev/null .*: [\d,]+ frames/s", out
    )
    assert "20,000 decoded" in out  # every simulated frame is a known, complete message
    assert list((tmp_path / "quick").glob("reference-*-20000.log"))
