"""CaptureReader: files, gzip, streaming chunk boundaries, python-can formats, clear errors."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import can
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from candiag.capture import CaptureReader, read_capture
from candiag.capture.formats.candump import format_candump
from candiag.errors import CaptureError
from candiag.ingest.frames import FrameBatch

LINES = [
    "(1700000000.000100) can0 123#0102",
    "(1700000000.000200) can0 18FF50E5#0102030405060708",
    "(1700000000.000300) can1 123#R",
    "(1700000000.000400) can0 20000040#0000000000000000",
    "(1700000000.000500) can0 123##1AABBCCDDEEFF0011AABBCCDD",
    "(1700000000.000600) can0 123#0G",
    "",
    "(1700000000.000700) vcan1 7FF#",
]
TEXT = "\n".join(LINES) + "\n"


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def as_rows(batch: FrameBatch) -> list[tuple[object, ...]]:
    return [
        (
            float(batch.timestamp[i]),
            int(batch.can_id[i]),
            int(batch.flags[i]),
            int(batch.dlc[i]),
            bytes(batch.data[i, : batch.dlc[i]]),
            batch.channels[batch.channel[i]],
        )
        for i in range(len(batch))
    ]


def test_reads_candump_with_stats(tmp_path: Path) -> None:
    batch, stats = read_capture(write(tmp_path, "x.log", TEXT.encode()))
    assert len(batch) == 6 and stats.frames == 6 and stats.lines == 8
    assert stats.malformed == 1 and [m.line for m in stats.examples] == [6]
    assert stats.blank == 1  # line 7: neither a frame nor malformed
    assert stats.format == "candump" and not stats.truncated
    assert "line 6" in stats.summary()


def test_gzip_reads_the_same(tmp_path: Path) -> None:
    plain, _ = read_capture(write(tmp_path, "x.log", TEXT.encode()))
    packed, stats = read_capture(write(tmp_path, "x.log.gz", gzip.compress(TEXT.encode())))
    assert as_rows(packed) == as_rows(plain) and stats.lines == 8


def test_truncated_gzip_is_read_up_to_the_cut(tmp_path: Path) -> None:
    text = "".join(f"(1700000000.{i:06d}) can0 123#{i % 256:02X}\n" for i in range(5000)).encode()
    compressor = zlib.compressobj(wbits=31)
    data = compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH)
    batch, stats = read_capture(write(tmp_path, "cut.log.gz", data))  # no gzip trailer
    assert len(batch) == 5000 and stats.truncated and stats.malformed == 0
    assert "cut short" in stats.summary()


def test_concatenated_gzip_members(tmp_path: Path) -> None:
    data = gzip.compress(b"(1.0) can0 123#01\n") + gzip.compress(b"(2.0) can0 123#02\n")
    batch, _ = read_capture(write(tmp_path, "two.log.gz", data))
    assert batch.timestamp.tolist() == [1.0, 2.0]


def test_file_without_final_newline(tmp_path: Path) -> None:
    batch, stats = read_capture(write(tmp_path, "x.log", b"(1.0) can0 123#01\n(2.0) can0 124#"))
    assert batch.can_id.tolist() == [0x123, 0x124] and stats.lines == 2


def test_unknown_suffix_is_sniffed(tmp_path: Path) -> None:
    batch, stats = read_capture(write(tmp_path, "trace.txt", b"(1.0) can0 123#01\n"))
    assert len(batch) == 1 and stats.format == "candump"


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("missing.log", None, "no such capture file"),
        ("empty.log", b"", "empty"),
        ("random.bin", b"\x00\x01\x02 not a capture", "unknown capture format"),
        ("fake.log.gz", b"plain text, not gzip\n", "not a valid gzip file"),
    ],
)
def test_clear_errors(tmp_path: Path, name: str, data: bytes | None, message: str) -> None:
    path = tmp_path / name
    if data is not None:
        path.write_bytes(data)
    with pytest.raises(CaptureError, match=message) as info:
        list(CaptureReader(path).batches())
    assert str(path) in str(info.value)


def test_directory_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="not a regular file"):
        CaptureReader(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, "secret.log", TEXT.encode())
    path.chmod(0)
    with pytest.raises(CaptureError, match="permissions"):
        CaptureReader(path)


def test_only_first_ten_examples_kept_but_all_counted(tmp_path: Path) -> None:
    bad = "".join(f"broken line {i}\n(1.0) can0 123#01\n" for i in range(25))
    _, stats = read_capture(write(tmp_path, "x.log", bad.encode()))
    assert stats.malformed == 25 and len(stats.examples) == 10
    assert [m.line for m in stats.examples] == list(range(1, 21, 2))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(chunk_lines=st.integers(1, 7), block_bytes=st.integers(1, 97))
def test_tiny_chunks_give_identical_results(
    tmp_path: Path, chunk_lines: int, block_bytes: int
) -> None:
    path = tmp_path / "chunks.log"
    if not path.exists():
        path.write_bytes((TEXT * 7).encode())
    whole_reader = CaptureReader(path)
    whole = FrameBatch.concat(list(whole_reader.batches()))
    reader = CaptureReader(path, chunk_lines=chunk_lines, block_bytes=block_bytes)
    parts = list(reader.batches())
    assert all(len(p) <= chunk_lines for p in parts)
    assert as_rows(FrameBatch.concat(parts)) == as_rows(whole)
    assert reader.stats.lines == whole_reader.stats.lines == 56
    assert reader.stats.malformed == whole_reader.stats.malformed == 7
    assert reader.stats.blank == whole_reader.stats.blank == 7
    assert reader.stats.examples == whole_reader.stats.examples


def test_large_file_streams_in_bounded_batches(tmp_path: Path) -> None:
    n = 50_000
    rng = np.random.default_rng(7)
    batch = FrameBatch(
        timestamp=1.7e9 + np.arange(n, dtype=np.float64) * 1e-4,
        can_id=rng.integers(0, 0x7FF, n).astype(np.uint32),
        flags=np.zeros(n, np.uint8),
        dlc=np.full(n, 8, np.uint8),
        data=rng.integers(0, 256, (n, 8)).astype(np.uint8),
        channel=np.zeros(n, np.int16),
        channels=["can0"],
    )
    path = write(tmp_path, "big.log", format_candump(batch))
    reader = CaptureReader(path, chunk_lines=4096)
    sizes = [len(b) for b in reader.batches()]
    assert max(sizes) == 4096 and sum(sizes) == n
    assert reader.stats.frames == n


def _messages() -> list[can.Message]:
    return [
        can.Message(timestamp=1.5, arbitration_id=0x123, data=b"\x01\x02", is_extended_id=False),
        can.Message(timestamp=1.75, arbitration_id=0x18FF50E5, data=bytes(range(8))),
        can.Message(timestamp=2.0, arbitration_id=0x7FF, data=b"", is_extended_id=False),
    ]


@pytest.mark.parametrize("suffix", [".asc", ".blf", ".csv", ".trc"])
@pytest.mark.parametrize("compressed", [False, True])
def test_python_can_formats(tmp_path: Path, suffix: str, compressed: bool) -> None:
    plain = tmp_path / f"cap{suffix}"
    with can.Logger(str(plain)) as logger:
        for msg in _messages():
            logger(msg)
    path = plain
    if compressed:
        path = tmp_path / f"cap{suffix}.gz"
        path.write_bytes(gzip.compress(plain.read_bytes()))
    batch, stats = read_capture(path)
    assert stats.format == suffix[1:] and stats.malformed == 0
    assert batch.can_id.tolist() == [0x123, 0x18FF50E5, 0x7FF]
    assert batch.is_extended.tolist() == [False, True, False]
    assert batch.dlc.tolist() == [2, 8, 0]
    assert bytes(batch.data[1]) == bytes(range(8))
    assert np.allclose(np.diff(batch.timestamp), [0.25, 0.25], atol=1e-3)


def test_a_bad_csv_row_is_skipped_and_the_rest_read(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "timestamp,arbitration_id,extended,remote,error,dlc,data\n"
        "1.0,0x123,0,0,0,1,AQ==\n"
        "this,is,not,a,valid,row\n"
        "2.0,0x124,0,0,0,1,Ag==\n"
    )
    batch, stats = read_capture(path)
    assert batch.can_id.tolist() == [0x123, 0x124] and stats.malformed == 1
    assert stats.examples[0].line == 3
    assert stats.examples[0].reason.startswith("CSV: expected 7 comma-separated columns")
