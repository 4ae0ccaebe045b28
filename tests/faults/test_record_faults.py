"""Recording under faults: SIGTERM, SIGKILL and a full disk, with traffic still flowing.

What the user must see, and what must not be lost:

* SIGTERM: exit 0, a summary, and the file holds every frame sent up to the
  signal, with no malformed line (the frames are a numbered sequence, so a gap or
  a duplicate shows);
* SIGKILL: the file (``.log`` and ``.log.gz``) still parses with no malformed line
  and ends at most about one flush interval (1 s) before the kill;
* a full disk: ``candiag record`` stops with exit code 4 and a message naming the
  file and the fix; the file parses cleanly up to the cut.  In-process, the
  recorder API raises ``RecordingError``, closes its bus and thread, and the
  process goes on (the next recording elsewhere works).

``record_child.py`` gives the child process its own traffic: python-can's
``virtual`` bus does not cross processes.
"""

from __future__ import annotations

import contextlib
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import can
import numpy as np
import numpy.typing as npt
import pytest

from candiag.capture import CandumpWriter, read_capture
from candiag.capture.recorder import record
from candiag.errors import RecordingError
from candiag.ingest.frames import FrameBatch
from candiag.ingest.live import BusReader

pytestmark = pytest.mark.slow

CHILD = Path(__file__).with_name("record_child.py")
RATE = 2000  # frames per second from the child's sender
# A killed recorder loses at most the flush interval (1 s), plus the reader's
# hand-over (0.1 s) and the recorder's poll (0.1 s), plus scheduling slack on a busy host.
KILL_LOSS_BOUND_S = 1.5


class RecordingChild:
    """``candiag record`` in a child process with its own numbered traffic."""

    def __init__(self, output: Path, channel: str, *, fsize_limit: int | None = None) -> None:
        def limit_file_size() -> None:  # runs in the child between fork and exec
            if fsize_limit is not None:
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() fails with EFBIG
                resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_limit, fsize_limit))

        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(RATE), "record", "-i", "virtual", "-c", channel,
             "-o", str(output)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=limit_file_size if fsize_limit is not None else None,
        )  # fmt: skip
        self.sent: list[tuple[int, float]] = []  # (frames sent so far, wall time)
        self.err: list[str] = []
        self._threads = [
            threading.Thread(target=self._read_sent, name="test-child-out"),
            threading.Thread(target=self._read_err, name="test-child-err"),
        ]
        for t in self._threads:
            t.start()

    def _read_sent(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if m := re.match(r"SENT (\d+) (\S+)", line):
                self.sent.append((int(m.group(1)), float(m.group(2))))

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err.append(line.rstrip("\n"))

    def wait_recording(self, seconds: float) -> None:
        """Wait until the recorder runs, then ``seconds`` more."""
        deadline = time.monotonic() + 20
        while not any(line.startswith("recording ") for line in self.err):
            assert self.proc.poll() is None, "\n".join(self.err)
            assert time.monotonic() < deadline, "the recorder did not start"
            time.sleep(0.02)
        time.sleep(seconds)

    def sent_before(self, wall: float) -> int:
        """Frames the sender had sent by ``wall`` (from its last report before it)."""
        return max((n for n, t in self.sent if t <= wall), default=0)

    def sent_at(self, count: int) -> float:
        """Wall time by which frame number ``count`` had been sent."""
        return min(t for n, t in self.sent if n > count)

    def finish(self, timeout: float = 20) -> int:
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for t in self._threads:
                t.join(5)
        return code


def counters(batch: FrameBatch) -> npt.NDArray[np.uint64]:
    """The sequence numbers of the child's frames (8-byte big-endian payload)."""
    assert (batch.can_id == 0x18FF5000).all() and (batch.dlc == 8).all()
    return np.ascontiguousarray(batch.data[:, :8]).view(">u8").ravel().astype(np.uint64)


def assert_contiguous(seq: npt.NDArray[np.uint64]) -> None:
    assert len(seq) > 0
    assert (np.diff(seq.astype(np.int64)) == 1).all(), "a frame is missing or repeated"


@pytest.fixture
def child_cleanup() -> Iterator[list[RecordingChild]]:
    children: list[RecordingChild] = []
    yield children
    for child in children:
        if child.proc.poll() is None:
            child.proc.kill()
        child.finish()


@pytest.mark.parametrize("suffix", [".log", ".log.gz"])
def test_sigterm_keeps_every_frame_up_to_the_signal(
    tmp_path: Path, suffix: str, child_cleanup: list[RecordingChild]
) -> None:
    out = tmp_path / f"term{suffix}"
    child = RecordingChild(out, "flt-term")
    child_cleanup.append(child)
    child.wait_recording(1.5)
    signalled = time.time()
    child.proc.send_signal(signal.SIGTERM)
    assert child.finish() == 0, "\n".join(child.err)
    batch, stats = read_capture(out)
    assert stats.malformed == 0
    seq = counters(batch)
    assert_contiguous(seq)
    # Traffic flowed throughout: everything sent before the signal is in the file.
    assert int(seq[-1]) + 1 >= child.sent_before(signalled) > RATE
    summary = next(line for line in child.err if line.startswith("recorded "))
    assert summary.startswith(f"recorded {len(batch)} frames (0 error frames)")
    assert f"files: {out}" in child.err


@pytest.mark.parametrize("suffix", [".log", ".log.gz"])
def test_sigkill_loses_at_most_the_last_second(
    tmp_path: Path, suffix: str, child_cleanup: list[RecordingChild]
) -> None:
    out = tmp_path / f"kill{suffix}"
    child = RecordingChild(out, "flt-kill")
    child_cleanup.append(child)
    child.wait_recording(2.5)
    killed = time.time()
    child.proc.kill()
    assert child.finish() == -signal.SIGKILL
    batch, stats = read_capture(out)  # a gzip without trailer reads up to its last flush
    assert stats.malformed == 0, stats.examples
    seq = counters(batch)
    assert_contiguous(seq)
    lost_s = killed - child.sent_at(int(seq[-1]))
    assert lost_s <= KILL_LOSS_BOUND_S, f"{lost_s:.2f} s of traffic before the kill is missing"


@pytest.mark.parametrize(("suffix", "limit"), [(".log", 60_000), (".log.gz", 30_000)])
def test_disk_full_stops_with_a_clear_error_and_a_clean_file(
    tmp_path: Path, suffix: str, limit: int, child_cleanup: list[RecordingChild]
) -> None:
    out = tmp_path / f"full{suffix}"
    child = RecordingChild(out, "flt-full", fsize_limit=limit)
    child_cleanup.append(child)
    code = child.finish(timeout=30)  # the recorder stops by itself when the file is full
    err = "\n".join(child.err)
    assert code == 4, err
    assert f"candiag: error: {out}: cannot write the recording (File too large)" in err
    assert "free disk space or choose a writable --output directory" in err
    assert "Traceback" not in err
    assert 0 < out.stat().st_size <= limit
    batch, stats = read_capture(out)
    assert stats.malformed == 0, "the file must end on a whole line, not a torn one"
    assert_contiguous(counters(batch))


# --------------------------------------------------------------------------------------------
# The recorder API in-process on a really full file system (tmpfs, needs root)
# --------------------------------------------------------------------------------------------
@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_recorder_api_on_a_full_disk_raises_and_the_process_goes_on(
    tiny_disk: Path, tmp_path: Path
) -> None:
    channel = "flt-api"
    sender_bus = can.Bus(interface="virtual", channel=channel, ignore_config=True)
    stop = threading.Event()
    sent = [0]

    def send() -> None:
        while not stop.wait(0.002):
            for _ in range(10):
                sender_bus.send(
                    can.Message(arbitration_id=0x18FF5000, data=sent[0].to_bytes(8, "big"))
                )
                sent[0] += 1

    sender = threading.Thread(target=send, name="test-sender")
    sender.start()
    try:
        out = tiny_disk / "api.log"
        reader = BusReader("virtual", channel)
        with pytest.raises(RecordingError) as info:
            record(reader, CandumpWriter(out), duration=30)
        message = str(info.value)
        assert str(out) in message and "No space left on device" in message
        assert "free disk space" in message
        assert not reader.running, "the reader must be stopped and its bus closed"
        batch, stats = read_capture(out)
        assert stats.malformed == 0
        assert_contiguous(counters(batch))
        # The process goes on: the same traffic records fine to a disk with space.
        good = tmp_path / "after.log"
        summary = record(BusReader("virtual", channel), CandumpWriter(good), duration=0.5)
        assert summary.frames > 0 and read_capture(good)[1].malformed == 0
    finally:
        stop.set()
        sender.join(5)
        with contextlib.suppress(can.CanError):
            sender_bus.shutdown()
