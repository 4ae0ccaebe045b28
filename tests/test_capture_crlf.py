"""Captures written on Windows (CRLF line ends) read to the same frames as LF ones.

Windows tools end lines with CR LF: candump logs copied from a Windows share or saved by a
Windows editor, Vector CANalyzer/CANoe ASC exports, PCAN-View TRC files, CSV from
python-can's CSVWriter or a spreadsheet.  Each sample is read as it is and with every LF
turned into CR LF (plain and gzip-compressed), and the two reads must agree frame for frame,
in what is counted and in the malformed lines found.  Inputs: python-can 4.6.1's test logs
(tests/data/pycan, tests/data/LICENSES.md), a simulated candump log with error frames and a
CSV written by python-can's own CSVWriter.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import can
import numpy as np
import pytest

from candiag.capture import read_capture
from candiag.cli import main
from candiag.ingest.frames import FrameBatch

DATA = Path(__file__).resolve().parent / "data" / "pycan"


def crlf(data: bytes) -> bytes:
    """Every line ending as Windows writes it (existing CR LF pairs are kept)."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def assert_same_frames(a: FrameBatch, b: FrameBatch) -> None:
    assert len(a) == len(b) > 0
    np.testing.assert_array_equal(a.timestamp, b.timestamp)
    np.testing.assert_array_equal(a.can_id, b.can_id)
    np.testing.assert_array_equal(a.flags, b.flags)
    np.testing.assert_array_equal(a.dlc, b.dlc)
    np.testing.assert_array_equal(a.data, b.data)
    assert [a.channels[i] for i in a.channel] == [b.channels[i] for i in b.channel]


def assert_reads_alike(lf: Path, windows: Path) -> None:
    (batch_lf, stats_lf), (batch_crlf, stats_crlf) = read_capture(lf), read_capture(windows)
    assert_same_frames(batch_lf, batch_crlf)
    assert (stats_crlf.format, stats_crlf.frames, stats_crlf.lines) == (
        stats_lf.format,
        stats_lf.frames,
        stats_lf.lines,
    )
    assert stats_crlf.malformed == stats_lf.malformed
    assert stats_crlf.blank == stats_lf.blank
    assert [(e.line, e.reason) for e in stats_crlf.examples] == [
        (e.line, e.reason) for e in stats_lf.examples
    ]


def write_windows_copy(source: Path, folder: Path, *, compress: bool = False) -> Path:
    data = crlf(source.read_bytes())
    assert b"\r\n" in data
    if compress:
        target = folder / f"crlf-{source.name}.gz"
        target.write_bytes(gzip.compress(data))
    else:
        target = folder / f"crlf-{source.name}"
        target.write_bytes(data)
    return target


@pytest.fixture(scope="module")
def candump_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated charger's candump -L log with error frames (wrong-bitrate bursts)."""
    path = tmp_path_factory.mktemp("crlf") / "sim.log"
    argv = ["simulate", "-o", str(path), "-d", "20", "--scenario", "wrong_bitrate", "--seed", "3"]
    assert main(argv) == 0
    return path


@pytest.mark.parametrize("compress", [False, True], ids=["log", "log.gz"])
def test_candump_log_with_crlf(candump_log: Path, tmp_path: Path, compress: bool) -> None:
    windows = write_windows_copy(candump_log, tmp_path, compress=compress)
    assert_reads_alike(candump_log, windows)
    batch, _ = read_capture(windows)
    assert batch.is_error.any()  # error frames survive the CR too


def test_candump_log_with_crlf_and_a_malformed_line(tmp_path: Path) -> None:
    lines = [
        "(1700000000.000100) can0 123#1122334455667788",
        "(1700000000.000200) can0 18FF5001#0102",
        "(1700000000.000300) can0 not-a-frame",
        "(1700000000.000400) can0 20000080#0000000000000000",
        "(1700000000.000500) can0 7FF#R",
    ]
    lf, windows = tmp_path / "lf.log", tmp_path / "crlf.log"
    lf.write_bytes(("\n".join(lines) + "\n").encode())
    windows.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    assert_reads_alike(lf, windows)
    batch, stats = read_capture(windows)
    assert len(batch) == 4 and stats.malformed == 1
    assert batch.data[0, :8].tobytes() == bytes.fromhex("1122334455667788")


@pytest.mark.parametrize(
    "name",
    [
        "logfile.asc",
        "logfile_errorframes.asc",
        "test_CanErrorFrames.asc",
        "single_frame.asc",
        "test_CanMessage_V1_1.trc",
        "test_CanMessage_V2_1.trc",
    ],
)
def test_python_can_text_logs_with_crlf(name: str, tmp_path: Path) -> None:
    source = DATA / name
    windows = write_windows_copy(source, tmp_path)
    # the copy keeps the suffix the reader is chosen by
    assert_reads_alike(source, windows)


def test_csv_from_python_can_with_crlf(tmp_path: Path) -> None:
    lf = tmp_path / "pycan.csv"
    messages = [
        can.Message(timestamp=1_700_000_000 + i / 100, arbitration_id=0x100 + i, data=[i] * (i % 9))
        for i in range(40)
    ]
    messages.append(
        can.Message(timestamp=1_700_000_001.0, arbitration_id=0x18FF5001, is_extended_id=True)
    )
    with can.CSVWriter(str(lf)) as writer:
        for msg in messages:
            writer.on_message_received(msg)
    windows = write_windows_copy(lf, tmp_path)
    assert_reads_alike(lf, windows)
    batch, _ = read_capture(windows)
    assert len(batch) == len(messages)
