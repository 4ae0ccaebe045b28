"""``analyze`` infers a bitrate it is not given from as many frames as it always did.

A lightly loaded bus has few back-to-back frame pairs (the only evidence of the bitrate in
host timestamps); the capture's first chunk was made smaller so the work starts sooner, and
the inference, fed only that chunk, assumed 125 kbit/s on a 250 kbit/s bus and doubled
every load figure (a review).  The sample for the bitrate stays at 262,144 frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from candiag.analysis import BITRATE_SAMPLE_FRAMES, analyze_capture
from candiag.capture.formats.candump.reader import FIRST_CHUNK_LINES

T0 = 1_700_000_000.0


def sparse_pairs_capture(path: Path, frames: int = 200_000) -> None:
    """One 8-byte frame every 10-12 ms at 250 kbit/s, and every 3,000th followed by a second
    one back to back (119 bits at 250 kbit/s)."""
    rng = np.random.default_rng(3)
    t = np.cumsum(0.01 + rng.uniform(0, 0.002, frames))
    lines = [f"({T0 + x:.6f}) can0 123#0102030405060708" for x in t]
    for i in range(1500, frames, 3000):
        lines[i] += f"\n({T0 + t[i] + 119 / 250_000:.6f}) can0 124#0102030405060708"
    path.write_text("\n".join(lines) + "\n")


def test_a_bitrate_shown_only_by_sparse_pairs_is_still_inferred(tmp_path: Path) -> None:
    assert FIRST_CHUNK_LINES < 200_000 <= BITRATE_SAMPLE_FRAMES  # the case this guards
    capture = tmp_path / "br250.log"
    sparse_pairs_capture(capture)
    load = analyze_capture(capture).report.to_json()["bus_load"]
    assert (load["bitrate"], load["bitrate_source"]) == (250_000, "inferred")
    assert "67 back-to-back frame pairs" in load["bitrate_detail"]
