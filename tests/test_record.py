"""Recording a live (virtual) bus: exact read-back incl. error frames, and the CLI end to end."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import can
import numpy as np
import pytest
from frame_batches import batch_of

from candiag.capture import CandumpWriter, read_capture
from candiag.capture.recorder import RecordSummary, record
from candiag.cli import main
from candiag.ingest.frames import FrameBatch
from candiag.ingest.live import BusReader


def messages(n: int) -> list[can.Message]:
    """Deterministic traffic: extended, standard, error (bus-off, controller), remote, empty.

    Timestamps are whole microseconds so that they survive the text format exactly.
    """
    out = []
    for i in range(n):
        ts = (1_700_000_000_000_000 + i * 1250) / 1e6
        kind = i % 5
        if kind == 0:
            msg = can.Message(
                timestamp=ts, arbitration_id=0x18FF5000 | (i & 0xFF), data=bytes([i & 0xFF]) * 8
            )
        elif kind == 1:
            msg = can.Message(
                timestamp=ts, arbitration_id=i & 0x7FF, is_extended_id=False, data=[1, 2, i & 0xFF]
            )
        elif kind == 2:
            # SocketCAN error frames as python-can delivers them: class bits in arbitration_id.
            msg = can.Message(
                timestamp=ts,
                is_error_frame=True,
                arbitration_id=0x40 if i % 2 else 0x204,
                is_extended_id=False,
                data=bytes([0, 0x10, 0, 0, 0, 0, 0x80, i & 0xFF]),
            )
        elif kind == 3:
            msg = can.Message(
                timestamp=ts,
                arbitration_id=0x123,
                is_extended_id=False,
                is_remote_frame=True,
                dlc=i % 9,
            )
        else:
            msg = can.Message(timestamp=ts, arbitration_id=0x100, is_extended_id=False)
        out.append(msg)
    return out


def expected_batch(n: int, channel: str) -> FrameBatch:
    msgs = messages(n)
    for m in msgs:
        m.channel = channel
    return batch_of(msgs)


def assert_same(got: FrameBatch, want: FrameBatch) -> None:
    assert len(got) == len(want)
    for name in ("timestamp", "can_id", "flags", "dlc", "data"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name
    assert [got.channels[c] for c in got.channel] == [want.channels[c] for c in want.channel]


def test_record_virtual_bus_and_read_back_exactly(tmp_path: Path) -> None:
    n = 2000
    out = tmp_path / "rec.log.gz"
    writer = CandumpWriter(out, fsync=False)
    reader = BusReader("virtual", "rec-inproc", batch_interval=0.02)
    stop = threading.Event()
    result: dict[str, RecordSummary] = {}

    def run_recorder() -> None:
        result["summary"] = record(reader, writer, stop=stop, poll_interval=0.02)

    recorder = threading.Thread(target=run_recorder, name="test-recorder")
    recorder.start()
    tx = can.Bus(
        interface="virtual", channel="rec-inproc", preserve_timestamps=True, ignore_config=True
    )
    try:
        deadline = time.monotonic() + 5
        while not reader.up:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        for msg in messages(n):
            tx.send(msg)
        while reader.frames_received < n:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        stop.set()
        recorder.join(5)
        tx.shutdown()
    summary = result["summary"]
    assert summary.frames == n and summary.error_frames == n // 5
    assert summary.files == [out]
    back, stats = read_capture(out)
    assert stats.malformed == 0 and not stats.truncated
    assert_same(back, expected_batch(n, "rec-inproc"))
    # Error frames keep their class bits (python-can's .log writer would write 0x80 for all).
    assert set(back.can_id[back.is_error].tolist()) == {0x40, 0x204}


def test_record_cli_duration_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "short.log"
    code = main(
        ["record", "-i", "virtual", "-c", "rec-duration", "-o", str(out), "--duration", "0.3"]
    )
    assert code == 0
    err = capsys.readouterr().err
    assert "recorded 0 frames (0 error frames)" in err and str(out) in err
    assert out.exists()


def test_record_cli_missing_adapter_fails_fast(tmp_path: Path) -> None:
    out = tmp_path / "none.log"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "candiag",
            "record",
            "-i",
            "socketcan",
            "-c",
            "can7",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stderr
    assert "candiag: error: CAN interface 'socketcan' channel 'can7'" in done.stderr
    assert "ip -details link show can7" in done.stderr
    assert not out.exists()


def test_record_cli_rejects_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["record", "-i", "virtual", "-c", "x", "-o", str(tmp_path / "a.log"), "--rotate-size", "0"]
    )
    assert code == 2 and "--rotate-size must be a positive number" in capsys.readouterr().err


CHILD = """
import sys, threading, time
import can
from can.interfaces import virtual
from candiag.cli import main
sys.path.insert(0, {tests!r})
from test_record import messages
N = {n}
def send():
    while len(virtual.channels.get("rec-e2e", [])) < 1:
        time.sleep(0.01)
    bus = can.Bus(interface="virtual", channel="rec-e2e", preserve_timestamps=True,
                  ignore_config=True)
    for m in messages(N):
        bus.send(m)
    bus.shutdown()
    print("SENT", flush=True)
threading.Thread(target=send, daemon=True).start()
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_record_cli_end_to_end_stops_cleanly_on_signal(tmp_path: Path, sig: int) -> None:
    n = 500
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(Path(__file__).parent), n=n))
    out = tmp_path / "e2e.log"
    child = subprocess.Popen(
        [sys.executable, str(script), "record", "--interface", "virtual", "--channel", "rec-e2e",
         "--output", str(out), "--rotate-time", "3600"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "SENT"
        time.sleep(0.5)  # the recorder drains every 0.1 s
        child.send_signal(sig)
        _, err = child.communicate(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    assert f"recorded {n} frames ({n // 5} error frames)" in err
    rotated = tmp_path / "e2e.0001.log"
    assert f"files: {rotated}" in err
    back, stats = read_capture(rotated)
    assert stats.malformed == 0
    assert_same(back, expected_batch(n, "rec-e2e"))
