"""CandumpWriter: round trip, size/time rotation, flushed gzip readable while open, errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from candiag.capture import CandumpWriter, read_capture
from candiag.capture.formats.candump import format_candump
from candiag.errors import InputError, RecordingError
from candiag.ingest.frames import FLAG_ERROR, FLAG_EXTENDED, FLAG_REMOTE, FrameBatch


class FakeClock:
    """A settable monotonic clock, so rotation by time needs no sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_batch(n: int, start: float = 1_700_000_000.0, seed: int = 0) -> FrameBatch:
    rng = np.random.default_rng(seed)
    flags = rng.choice(
        np.array([0, FLAG_EXTENDED, FLAG_ERROR, FLAG_REMOTE], np.uint8), n, p=[0.5, 0.3, 0.1, 0.1]
    )
    extended = (flags & FLAG_EXTENDED) != 0
    ids = np.where(extended, rng.integers(0, 0x1FFFFFFF, n), rng.integers(0, 0x7FF, n))
    dlc = rng.integers(0, 9, n).astype(np.uint8)
    data = rng.integers(0, 256, (n, 8)).astype(np.uint8)
    data[np.arange(8)[None, :] >= dlc[:, None]] = 0
    data[(flags & FLAG_REMOTE) != 0] = 0
    return FrameBatch(
        timestamp=start + np.arange(n, dtype=np.float64) * 0.000125,
        can_id=ids.astype(np.uint32),
        flags=flags,
        dlc=dlc,
        data=data,
        channel=np.zeros(n, np.int16),
        channels=["can0"],
    )


def assert_same(a: FrameBatch, b: FrameBatch) -> None:
    assert len(a) == len(b)
    for name in ("timestamp", "can_id", "flags", "dlc", "data"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


@pytest.mark.parametrize("suffix", [".log", ".log.gz"])
def test_round_trip_through_file(tmp_path: Path, suffix: str) -> None:
    batch = make_batch(3000)
    with CandumpWriter(tmp_path / f"rec{suffix}") as writer:
        writer.write(batch.take(slice(0, 1000)))
        writer.write(batch.take(slice(1000, None)))
    assert writer.files == [tmp_path / f"rec{suffix}"] and writer.frames_written == 3000
    back, stats = read_capture(writer.files[0])
    assert stats.malformed == 0 and not stats.truncated
    assert_same(back, batch)


def test_plain_file_is_exactly_format_candump(tmp_path: Path) -> None:
    batch = make_batch(200)
    with CandumpWriter(tmp_path / "rec.log") as writer:
        writer.write(batch)
    assert (tmp_path / "rec.log").read_bytes() == format_candump(batch)


@pytest.mark.parametrize("suffix", [".log", ".log.gz"])
def test_rotation_by_size(tmp_path: Path, suffix: str) -> None:
    batch = make_batch(20_000)
    limit = 64_000
    with CandumpWriter(tmp_path / f"rec{suffix}", rotate_bytes=limit, fsync=False) as writer:
        for start in range(0, 20_000, 500):
            writer.write(batch.take(slice(start, start + 500)))
            writer.flush()  # gzip: the on-disk size is known only after a flush
    names = [p.name for p in writer.files]
    assert names[:2] == [f"rec.0001{suffix}", f"rec.0002{suffix}"] and len(names) >= 3
    one_batch = len(format_candump(batch.take(slice(0, 500))))
    sizes = [p.stat().st_size for p in writer.files]
    assert all(s <= limit + one_batch for s in sizes)
    assert all(s >= limit for s in sizes[:-1])
    parts = [read_capture(p)[0] for p in writer.files]
    assert_same(FrameBatch.concat(parts), batch)


def test_rotation_by_time(tmp_path: Path) -> None:
    clock = FakeClock()
    batch = make_batch(300)
    writer = CandumpWriter(tmp_path / "rec.log", rotate_seconds=60, clock=clock)
    writer.write(batch.take(slice(0, 100)))
    clock.now += 30
    writer.write(batch.take(slice(100, 200)))
    clock.now += 31
    writer.flush_if_due()  # a silent bus still rotates on time
    writer.write(batch.take(slice(200, 300)))
    writer.close()
    assert [p.name for p in writer.files] == ["rec.0001.log", "rec.0002.log"]
    assert len(read_capture(writer.files[0])[0]) == 200
    assert len(read_capture(writer.files[1])[0]) == 100


def test_gzip_is_readable_after_each_flush_without_close(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "live.log.gz"
    writer = CandumpWriter(path, flush_interval=1.0, clock=clock)
    batch = make_batch(3000)
    try:
        for step in range(3):
            writer.write(batch.take(slice(step * 1000, (step + 1) * 1000)))
            clock.now += 1.0
            writer.flush_if_due()
            # As if the process were killed now: the file has no gzip trailer yet.
            back, stats = read_capture(path)
            assert stats.truncated and stats.malformed == 0
            assert_same(back, batch.take(slice(0, (step + 1) * 1000)))
    finally:
        writer.close()
    assert not read_capture(path)[1].truncated


def test_flush_waits_for_the_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    clock = FakeClock()
    path = tmp_path / "slow.log"
    writer = CandumpWriter(path, flush_interval=1.0, clock=clock)
    try:
        writer.write(make_batch(10))
        # Written unbuffered (a killed process loses nothing), but not yet forced to disk.
        assert path.stat().st_size == len(format_candump(make_batch(10)))
        assert synced == []
        clock.now += 0.5
        writer.flush_if_due()
        assert synced == []
        clock.now += 0.5
        writer.flush_if_due()
        assert len(synced) == 1
    finally:
        writer.close()


def test_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "old.log").write_text("precious\n")
    with pytest.raises(RecordingError, match="already exists"):
        CandumpWriter(tmp_path / "old.log")
    assert (tmp_path / "old.log").read_text() == "precious\n"


def test_bad_suffix_and_limits_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"\.log or \.log\.gz"):
        CandumpWriter(tmp_path / "rec.asc")
    with pytest.raises(InputError, match="positive"):
        CandumpWriter(tmp_path / "rec.log", rotate_bytes=0)


def test_unwritable_directory_is_a_recording_error(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "dir" / "rec.log"
    with pytest.raises(RecordingError, match="No such file or directory") as info:
        CandumpWriter(target)
    assert str(target) in str(info.value) and "--output" in str(info.value)


def test_disk_full_becomes_recording_error(tmp_path: Path) -> None:
    # A real write failure: the file size limit makes write() fail with EFBIG,
    # in a child process so the limit does not touch the test runner.
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        import numpy as np
        from candiag.errors import RecordingError
        from candiag.capture import CandumpWriter
        from candiag.ingest.frames import FrameBatch
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
        n = 1000
        batch = FrameBatch(np.arange(n, dtype=float), np.zeros(n, np.uint32),
            np.zeros(n, np.uint8), np.full(n, 8, np.uint8), np.zeros((n, 8), np.uint8),
            np.zeros(n, np.int16), ["can0"])
        writer = CandumpWriter({str(tmp_path / "full.log")!r})
        try:
            for _ in range(10):
                writer.write(batch)
                writer.flush()
        except RecordingError as err:
            print(err)
            sys.exit(4)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 4, done.stderr
    assert "full.log: cannot write the recording (File too large)" in done.stdout
    assert "free disk space" in done.stdout
    # The first batch (45 kB) only partly fitted: the file is cut back to its last whole
    # line instead of ending in a torn one (which could parse as a shorter frame).
    written = (tmp_path / "full.log").read_bytes()
    assert 0 < len(written) <= 20_000 and written.endswith(b"\n")
    back, stats = read_capture(tmp_path / "full.log")
    assert stats.malformed == 0 and len(back) == written.count(b"\n")
    assert "Traceback" not in done.stderr
