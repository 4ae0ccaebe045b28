"""``candiag record`` beside can-utils' ``candump`` on a real socket, then ``candiag analyze``.

One recording session feeds every test here (the VM is slow to start Python):
both recorders listen to the same traffic, written by a raw socket, with every
error class.  candump is the reference: the two files must hold the same frames,
with the same kernel timestamps, and analyze must count each class exactly.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from candiag.capture import read_capture
from candiag.ingest.frames import FrameBatch

from .vcanlib import (
    ERROR_CLASS_BITS,
    Frame,
    RawSocket,
    candiag_cmd,
    error_frame,
    run_candiag,
    start,
    stop,
)

CHANNEL = "vcan0"
SYNC_ID, END_ID = 0x7E0, 0x7E1  # markers, not part of the compared traffic

# Data (standard, extended, empty, remote) and every error class, once alone and a few
# combined the way drivers report them (protocol+bus_error, controller+counters).
TRAFFIC: list[Frame] = [
    Frame(0x123, bytes([1, 2])),
    Frame(0x000, b""),
    Frame(0x7FF, bytes(range(8))),
    Frame(0x0284F001, bytes([0, 0, 0, 0, 0x19, 0, 1, 0x10]), extended=True),
    Frame(0x18FF50E5, b"\xde\xad\xbe\xef", extended=True),
    Frame(0x321, remote=True, dlc=0),
    *(
        error_frame(bit, [3 if name == "lost_arbitration" else 0, 0x10, 0, 0, 0, 0, 0, 0])
        for name, bit in ERROR_CLASS_BITS.items()
    ),
    error_frame(0x008 | 0x080, [0, 0, 0x04, 0x08, 0, 0, 0, 0]),
    error_frame(0x008 | 0x080, [0, 0, 0x02, 0x19, 0, 0, 0, 0]),
    error_frame(0x004 | 0x200, [0, 0x20, 0, 0, 0, 0, 130, 4]),
    Frame(0x124, b"\x05"),
]
EXPECTED_CLASSES = dict.fromkeys(ERROR_CLASS_BITS, 1)
EXPECTED_CLASSES.update(protocol=3, bus_error=3, controller=2, counters=2)
EXPECTED_CLASSES["unclassified"] = 0  # a kernel error frame always carries its class bits


@dataclass
class Session:
    candiag_log: Path
    candump_log: Path
    record_output: str


def _lines_with(path: Path, marker: str) -> bool:
    return path.exists() and marker in path.read_text(errors="replace")


def _send_until_seen(
    raw: RawSocket,
    frame: Frame,
    files: list[Path],
    timeout: float,
    procs: list[subprocess.Popen[bytes]],
) -> None:
    """Repeat a marker frame until every recorder has written it (both are then listening)."""
    token = f"{frame.can_id:03X}#"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [p.args for p in procs if p.poll() is not None]
        assert not dead, f"recorder exited early: {dead}"
        raw.send([frame])
        time.sleep(0.5)
        if all(_lines_with(f, token) for f in files):
            return
    raise AssertionError(f"{token} never reached {[str(f) for f in files]} in {timeout} s")


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    candump = shutil.which("candump")
    stdbuf = shutil.which("stdbuf")
    assert candump and stdbuf, "the VM needs can-utils and coreutils' stdbuf"
    tmp = tmp_path_factory.mktemp("record")
    candiag_log, candump_log = tmp / "candiag.log", tmp / "candump.log"
    # Line-buffered so progress is visible; #FFFFFFFF subscribes to every error class.
    dump = start([stdbuf, "-oL", candump, "-L", f"{CHANNEL},0:0,#FFFFFFFF"], candump_log)
    rec = start(
        candiag_cmd("record", "-i", "socketcan", "-c", CHANNEL, "-o", str(candiag_log)),
        tmp / "record.out",
    )
    try:
        with RawSocket(CHANNEL) as raw:
            _send_until_seen(
                raw, Frame(SYNC_ID, b"\x01"), [candiag_log, candump_log], 90, [dump, rec]
            )
            raw.send(TRAFFIC, gap=0.002)
            _send_until_seen(
                raw, Frame(END_ID, b"\x02"), [candiag_log, candump_log], 30, [dump, rec]
            )
    finally:
        rc_rec = stop(rec)
        stop(dump)
    out = (tmp / "record.out").read_text()
    assert rc_rec == 0, out
    return Session(candiag_log, candump_log, out)


def _traffic(path: Path) -> FrameBatch:
    batch, stats = read_capture(path)
    assert stats.malformed == 0, stats.summary()
    marker = batch.is_data & np.isin(batch.can_id, [SYNC_ID, END_ID])
    return batch.take(~marker)


def _frames(batch: FrameBatch) -> list[Frame]:
    out = []
    for i in range(len(batch)):
        n = int(batch.dlc[i])
        if batch.is_error[i]:
            out.append(Frame(int(batch.can_id[i]), bytes(batch.data[i, :n]), error=True))
        elif batch.is_remote[i]:
            out.append(
                Frame(int(batch.can_id[i]), extended=bool(batch.is_extended[i]), remote=True, dlc=n)
            )
        else:
            out.append(
                Frame(
                    int(batch.can_id[i]),
                    bytes(batch.data[i, :n]),
                    extended=bool(batch.is_extended[i]),
                )
            )
    return out


def test_candiag_recording_holds_exactly_the_traffic(session: Session) -> None:
    assert _frames(_traffic(session.candiag_log)) == TRAFFIC
    assert "listen-only" in session.record_output


def test_candump_and_candiag_record_the_same_frames(session: Session) -> None:
    ours, theirs = _traffic(session.candiag_log), _traffic(session.candump_log)
    assert _frames(theirs) == TRAFFIC, "candump (the reference) saw other traffic"
    assert ours.can_id.tolist() == theirs.can_id.tolist()
    assert ours.flags.tolist() == theirs.flags.tolist()
    assert ours.dlc.tolist() == theirs.dlc.tolist()
    assert np.array_equal(ours.data, theirs.data)
    assert ours.channels == theirs.channels == [CHANNEL]
    # Same skb, same kernel receive timestamp (candump prints microseconds).
    assert np.abs(ours.timestamp - theirs.timestamp).max() <= 1.5e-6


def test_error_frames_keep_their_classes_in_both_files(session: Session) -> None:
    expected = [f.can_id for f in TRAFFIC if f.error]
    for path in (session.candiag_log, session.candump_log):
        batch = _traffic(path)
        assert batch.can_id[batch.is_error].tolist() == expected, path.name
    text = session.candiag_log.read_text()
    assert "20000040#" in text and "20000088#" in text  # bus-off; protocol + bus-error


def test_analyze_counts_each_error_class_exactly(session: Session, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    done = run_candiag("analyze", str(session.candiag_log), "--json", str(report))
    assert done.returncode == 0, done.stderr
    doc = json.loads(report.read_text())
    errors = doc["error_frames"]
    assert errors["error_frames"] == sum(f.error for f in TRAFFIC)
    assert errors["by_class"] == EXPECTED_CLASSES
    assert errors["counters"]["tec_last"] == 130 and errors["counters"]["rec_last"] == 4
    # The two marker kinds (sync repeats) are ordinary data frames; analyze counts them too.
    frames = doc["frames"]
    assert frames["error"] == sum(f.error for f in TRAFFIC)


def test_candump_reads_our_recording_back(session: Session, tmp_path: Path) -> None:
    """canplayer (can-utils) replays candiag's file onto vcan1: our format is real candump -L."""
    canplayer = shutil.which("canplayer")
    assert canplayer, "the VM needs can-utils"
    with RawSocket("vcan1", err_mask=0x1FFFFFFF) as witness:
        done = subprocess.run(
            [canplayer, "-I", str(session.candiag_log), "-t", f"vcan1={CHANNEL}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        seen = [f for f in witness.receive(1.0) if f.can_id not in (SYNC_ID, END_ID) or f.error]
    assert seen == TRAFFIC
