"""Every python-can test log through CaptureReader and the real ``candiag analyze --json``.

The logs are python-can's (LGPL-3.0, source distribution ``test/data``): set
``CANDIAG_PYCAN_DATA`` to that directory; the default is where the development machines
unpack python-can 4.6.1.  Skipped when the directory is absent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import can
import pytest

from candiag.capture import CaptureReader
from candiag.ingest.frames import FrameBatch
from tests.realworld import HOW, pycan_dir

DATA_DIR = pycan_dir()
LOGS = (
    sorted(p for p in DATA_DIR.iterdir() if p.suffix not in (".py", ".json") and p.is_file())
    if DATA_DIR is not None
    else []
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not LOGS, reason=f"python-can's test logs not found: {HOW}"),
]


@pytest.mark.parametrize("path", LOGS, ids=[p.name for p in LOGS])
def test_every_python_can_record_is_accounted_for(path: Path) -> None:
    reader = CaptureReader(path)
    batch = FrameBatch.concat(list(reader.batches()))
    stats = reader.stats
    assert stats.frames == len(batch)
    assert int(batch.is_data.sum() + batch.is_remote.sum() + batch.is_error.sum()) == len(batch)
    with can.LogReader(str(path)) as theirs:
        messages = list(theirs)
    ours = {round(float(t), 6) for t in batch.timestamp}
    missing = [m for m in messages if round(m.timestamp, 6) not in ours]
    transmit_requests = sum(n for kind, n in stats.not_frames.items() if "TxRq" in kind)
    # A record python-can read is a frame here, or a counted malformed line / transmit request.
    assert len(missing) <= stats.malformed + transmit_requests, missing[:3]
    assert int(batch.is_error.sum()) >= sum(m.is_error_frame for m in messages)


@pytest.mark.parametrize("path", LOGS, ids=[p.name for p in LOGS])
def test_analyze_json_on_every_python_can_log(path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "candiag", "analyze", str(path), "--json", "-"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    frames = report["frames"]
    assert frames["data"] + frames["remote"] + frames["error"] == frames["total"]
    assert frames["total"] == report["capture"]["frames"]
    assert report["capture"]["format"]
    # Every data and remote frame is in exactly one per-id entry, whatever the channels.
    assert sum(e["count"] for e in report["ids"].values()) == frames["data"] + frames["remote"]
    # Load is physical: never above the bus, on any channel.
    loads = [report["bus_load"], *report["bus_load"].get("channels", {}).values()]
    for load in loads:
        assert load["mean_ratio"] is None or 0.0 <= load["mean_ratio"] <= 1.0
        assert 0.0 <= load["max_ratio_1s"] <= 1.0
    if path.suffix == ".blf":
        # Vector error records carry the failed frame's id: never SocketCAN class bits.
        assert not [f for f in report["findings"] if f["code"] == "CAN_ERR_TRX"]
    if path.name == "test_CanErrorFrameExt.blf":
        by_class = report["error_frames"]["by_class"]
        assert by_class["unclassified"] == 2
        assert all(v == 0 for k, v in by_class.items() if k != "unclassified")
