"""Reading a capture ahead in a thread (candiag/capture/readahead.py): the same batches in
the same order, errors raised where they would be, bounded, and no thread left behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from candiag.capture import CaptureReader
from candiag.capture.readahead import read_ahead
from candiag.ingest.frames import FrameBatch
from tests.synthetic import synthetic_batch


def counted(batches: list[FrameBatch], taken: list[int]) -> Iterator[FrameBatch]:
    for b in batches:
        taken.append(len(taken))
        yield b


def test_the_same_batches_in_the_same_order(tmp_path: Path) -> None:
    from candiag.capture import CandumpWriter

    path = tmp_path / "x.log"
    writer = CandumpWriter(path, fsync=False)
    writer.write(synthetic_batch(50_000, seed=3))
    writer.close()
    plain = list(CaptureReader(path, chunk_lines=4096).batches())
    ahead = list(read_ahead(CaptureReader(path, chunk_lines=4096).batches()))
    assert len(plain) == len(ahead) > 10
    for a, b in zip(plain, ahead, strict=True):
        assert np.array_equal(a.timestamp, b.timestamp) and np.array_equal(a.data, b.data)


def test_a_reading_error_is_raised_in_the_consumer_after_the_batches_before_it() -> None:
    def failing() -> Iterator[FrameBatch]:
        yield synthetic_batch(10)
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for batch in read_ahead(failing()):
            got.append(batch)
    assert len(got) == 1


def test_at_most_depth_batches_wait() -> None:
    source = [synthetic_batch(5, seed=i) for i in range(20)]
    taken: list[int] = []
    ahead = read_ahead(counted(source, taken), depth=2)
    next(ahead)
    time.sleep(0.3)  # the reader fills what room there is, and waits
    # One handed over, two waiting, one read and blocked on the full queue.
    assert len(taken) <= 1 + 2 + 1
    assert len(list(ahead)) == 19


def test_a_consumer_that_stops_early_stops_the_reader() -> None:
    source = [synthetic_batch(5, seed=i) for i in range(50)]
    taken: list[int] = []
    ahead = read_ahead(counted(source, taken), depth=2)
    next(ahead)
    ahead.close()
    assert not any(t.name == "candiag-read-ahead" for t in threading.enumerate())
    assert len(taken) < 10


@pytest.mark.slow
def test_ctrl_c_on_analyze_of_an_open_pipe_exits_130(tmp_path: Path) -> None:
    """``candump -L can0 | candiag analyze -`` stopped with Ctrl-C: standard input is read in
    the consumer (a reading thread blocked on the open pipe held the stdin lock at exit:
    "Fatal Python error", SIGABRT; a review)."""
    import os
    import signal
    import subprocess
    import sys

    lines = "".join(f"({1_700_000_000 + k * 0.01:.6f}) can0 123#0102\n" for k in range(20_000))
    proc = subprocess.Popen(
        [sys.executable, "-m", "candiag", "analyze", "-", "-q", "--json", str(tmp_path / "r")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(lines.encode())
        proc.stdin.flush()  # and the pipe stays open, as candump's does
        time.sleep(5.0)  # started, read what there is, waiting for more
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)  # the pipe still open: communicate() would close it
        assert proc.stderr is not None
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert b"Fatal Python error" not in err, err.decode(errors="replace")
    assert proc.returncode == 130, err.decode(errors="replace")
