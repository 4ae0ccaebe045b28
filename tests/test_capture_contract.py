"""One contract for every capture format: the same assertions for each reader.

Modelled on python-can's ``test/logformats_test.py::ReaderWriterTest``: a reference traffic
(standard and extended data frames, empty ones, remote frames, error frames with their
SocketCAN classes, CAN FD with BRS/ESI, two channels) is written in each format by that
format's own writer (python-can's for ASC, BLF, TRC, CSV and MF4; candiag's for candump
``-L``; the candump ``-ta`` screen layout for screen output), then read back through
:class:`~candiag.capture.CaptureReader`.  A :class:`FormatCase` says what its format can
carry (remote, FD flags, error classes, channels, absolute time), and every test runs for
every case: a new format gets the whole contract by adding one case.

The contract: every frame written is read back with its kind, identifier, length, payload,
channel and time; error frames are error frames (classified only where the format records
the class); the same capture reads the same from gzip, from standard input and in chunks
of any size; it is recognized by its content whatever its file name; and, for text formats,
one bad line is skipped and reported with its number while the rest is read, and CRLF or
CR line ends change nothing.
"""

from __future__ import annotations

import gzip
import io
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import can
import pytest
from frame_batches import batch_of

from candiag.capture import CandumpWriter, CaptureReader
from candiag.errors import CaptureError
from candiag.ingest.frames import CAN_ERR_FLAG, FrameBatch

T0 = 1_700_000_000.0

# (seconds after T0, kind, id, extended, payload or remote length, channel 0/1, brs, esi)
TRAFFIC: list[tuple[float, str, int, bool, bytes | int, int, bool, bool]] = [
    (0.000100, "data", 0x123, False, b"\x01\x02", 0, False, False),
    (0.001250, "data", 0x18FF50E5, True, bytes(range(8)), 1, False, False),
    (0.002000, "data", 0x001, False, b"", 0, False, False),
    (0.003000, "remote", 0x7FF, False, 4, 0, False, False),
    (0.004000, "remote", 0x1ABCDE00, True, 0, 1, False, False),
    (0.005000, "error", 0x040, False, bytes(8), 0, False, False),  # bus-off
    (0.006000, "error", 0x004, False, bytes([0, 0x20, 0, 0, 0, 0, 0x88, 0]), 1, False, False),
    (0.007000, "fd", 0x321, False, bytes(range(12)), 1, True, False),
    (0.008000, "fd", 0x10000001, True, bytes(range(64)), 0, True, True),
    *[
        (0.010 + 0.001 * k, "data", 0x200 + k, False, bytes([k] * (k % 9)), k % 2, False, False)
        for k in range(12)
    ],
]


def messages(
    channel_value: Callable[[int], object], keep: Callable[[str], bool]
) -> list[can.Message]:
    """The reference traffic as python-can messages, the kinds a format can carry."""
    out = []
    for dt, kind, ident, extended, body, ch, brs, esi in TRAFFIC:
        if not keep(kind):
            continue
        remote = kind == "remote"
        out.append(
            can.Message(
                timestamp=T0 + dt,
                arbitration_id=ident,
                is_extended_id=extended,
                is_remote_frame=remote,
                is_error_frame=kind == "error",
                is_fd=kind == "fd",
                bitrate_switch=brs,
                error_state_indicator=esi,
                dlc=body if isinstance(body, int) else len(body),
                data=b"" if isinstance(body, int) else body,
                channel=channel_value(ch),
                check=False,
            )
        )
    return out


# -- writers: each format's own -----------------------------------------------------------------
def python_can_writer(cls: type) -> Callable[[list[can.Message], Path], None]:
    def write(msgs: list[can.Message], path: Path) -> None:
        writer = cls(str(path))
        for msg in msgs:
            writer.on_message_received(msg)
        writer.stop()

    return write


def write_candump(msgs: list[can.Message], path: Path) -> None:
    with CandumpWriter(path, fsync=False) as writer:
        writer.write(batch_of(msgs))


def write_screen(msgs: list[can.Message], path: Path) -> None:
    """candump ``-ta`` screen output, laid out as can-utils prints it."""
    lines = []
    for m in msgs:
        ident = f"{m.arbitration_id:08X}" if m.is_extended_id else f"{m.arbitration_id:03X}"
        if m.is_error_frame:
            ident = f"{m.arbitration_id | CAN_ERR_FLAG:08X}"
        body = "remote request" if m.is_remote_frame else " ".join(f"{b:02X}" for b in m.data)
        tail = "   ERRORFRAME" if m.is_error_frame else ""
        lines.append(f" ({m.timestamp:.6f})  {m.channel}  {ident}   [{m.dlc}]  {body}{tail}")
    path.write_text("\n".join(lines) + "\n")


@dataclass(frozen=True)
class FormatCase:
    """A capture format and what it can carry (python-can's ``_setup_instance_helper`` flags)."""

    format: str
    suffix: str
    write: Callable[[list[can.Message], Path], None]
    channel_value: Callable[[int], object]  # channel 0/1 as the writer takes it
    channel_name: Callable[[int], str]  # and as the capture names it when read back
    remote: bool = True
    errors: bool = True
    error_classes: bool = False  # error frames keep their SocketCAN class
    fd: bool = True
    fd_flags: bool = True  # BRS and ESI kept
    absolute_time: bool = True  # else times are relative to the first frame
    time_tolerance: float = 1e-6
    frame_line: str = ""  # text formats: a regex matching the frame lines
    bad_line: str = ""  # text formats: a line the reader cannot read
    needs: str = ""  # optional module the reader needs
    streams: bool = True  # readable from gzip and standard input

    @property
    def text(self) -> bool:
        return bool(self.frame_line)

    def keeps(self, kind: str) -> bool:
        return {"remote": self.remote, "error": self.errors, "fd": self.fd}.get(kind, True)


CASES = [
    FormatCase(
        "candump", ".log", write_candump, lambda k: f"can{k}", lambda k: f"can{k}",
        error_classes=True, frame_line=r"^\(", bad_line="(1700000000.001500) can0 12G#0102",
    ),
    FormatCase(
        "asc", ".asc", python_can_writer(can.ASCWriter), lambda k: k, lambda k: str(k + 1),
        absolute_time=False, frame_line=r"^\s*\d+\.\d+\s+(\d+\s+[0-9A-F]|CANFD)",
        bad_line=" 0.001500 1  12G             Rx   d 2 01 02",
    ),
    FormatCase(
        "blf", ".blf", python_can_writer(can.BLFWriter), lambda k: k, lambda k: str(k + 1),
    ),
    FormatCase(
        # python-can's TRCWriter writes data frames only (remote, error, FD: "not implemented").
        "trc", ".trc", python_can_writer(can.TRCWriter), lambda k: k, lambda k: str(k + 1),
        remote=False, errors=False, fd=False, frame_line=r"^\s+\d+\s+\d",
        bad_line="      3         1.500 DT  1     01G3 Rx -  2    01 02",
    ),
    FormatCase(
        # One channel only, no CAN FD (python-can's CSV columns).
        "csv", ".csv", python_can_writer(can.CSVWriter), lambda k: k, lambda k: "can0",
        fd=False, frame_line=r"^\d", bad_line="1700000000.0015,0xZZ,0,0,0,1,AQ==",
    ),
    FormatCase(
        "candump-screen", ".log", write_screen, lambda k: f"can{k}", lambda k: f"can{k}",
        error_classes=True, fd_flags=False, frame_line=r"^\s*\(",
        bad_line=" (1700000000.001500)  can0  12G   [2]  01 02",
    ),
    FormatCase(
        "mf4", ".mf4", python_can_writer(can.MF4Writer), lambda k: k + 1, lambda k: str(k + 1),
        needs="asammdf", streams=False,
    ),
]  # fmt: skip
TEXT_CASES = [case for case in CASES if case.text]
STREAM_CASES = [case for case in CASES if case.streams]
FILE_ONLY_CASES = [case for case in CASES if not case.streams]


def ids(case: FormatCase) -> str:
    return case.format


@pytest.fixture(params=CASES, ids=ids)
def case(request: pytest.FixtureRequest) -> FormatCase:
    return _available(request.param)


@pytest.fixture(params=TEXT_CASES, ids=ids)
def text_case(request: pytest.FixtureRequest) -> FormatCase:
    return _available(request.param)


@pytest.fixture(params=STREAM_CASES, ids=ids)
def stream_case(request: pytest.FixtureRequest) -> FormatCase:
    return _available(request.param)


@pytest.fixture(params=FILE_ONLY_CASES, ids=ids)
def file_only_case(request: pytest.FixtureRequest) -> FormatCase:
    return _available(request.param)


def _available(case: FormatCase) -> FormatCase:
    if case.needs:
        pytest.importorskip(case.needs)
    return case


def written(case: FormatCase, tmp_path: Path, name: str = "") -> tuple[Path, list[can.Message]]:
    msgs = messages(case.channel_value, case.keeps)
    path = tmp_path / (name or f"capture{case.suffix}")
    case.write(msgs, path)
    return path, msgs


def read(path: Path | str, **kwargs: object) -> tuple[FrameBatch, CaptureReader]:
    reader = CaptureReader(path, **kwargs)  # type: ignore[arg-type]
    return FrameBatch.concat(list(reader.batches())), reader


def rows(batch: FrameBatch) -> list[tuple[object, ...]]:
    """Every field of every frame (channels by name), for comparing two reads."""
    return [
        (float(batch.timestamp[i]), int(batch.can_id[i]), int(batch.flags[i]),
         int(batch.dlc[i]), bytes(batch.data[i, : batch.dlc[i]]),
         batch.channels[batch.channel[i]])
        for i in range(len(batch))
    ]  # fmt: skip


# -- the contract -----------------------------------------------------------------------------
def test_frame_kinds_and_counts(case: FormatCase, tmp_path: Path) -> None:
    path, msgs = written(case, tmp_path)
    batch, reader = read(path)
    assert reader.stats.format == case.format
    assert reader.stats.frames == len(batch) == len(msgs)
    assert reader.stats.malformed == 0
    kinds = {
        "error": sum(m.is_error_frame for m in msgs),
        "remote": sum(m.is_remote_frame for m in msgs),
        "extended": sum(m.is_extended_id and not m.is_error_frame for m in msgs),
        "fd": sum(m.is_fd for m in msgs),
    }
    assert int(batch.is_error.sum()) == kinds["error"]
    assert int(batch.is_remote.sum()) == kinds["remote"]
    assert int((batch.is_extended & ~batch.is_error).sum()) == kinds["extended"]
    assert int(batch.is_fd.sum()) == kinds["fd"]
    assert int(batch.is_data.sum()) == len(msgs) - kinds["error"] - kinds["remote"]


def test_every_frame_is_read_back(case: FormatCase, tmp_path: Path) -> None:
    path, msgs = written(case, tmp_path)
    batch, _ = read(path)
    for i, msg in enumerate(msgs):
        if msg.is_error_frame:
            continue
        assert int(batch.can_id[i]) == msg.arbitration_id, i
        assert bool(batch.is_extended[i]) == msg.is_extended_id, i
        assert bool(batch.is_remote[i]) == msg.is_remote_frame, i
        assert int(batch.dlc[i]) == msg.dlc, i
        if msg.is_remote_frame:
            assert not batch.data[i].any(), i  # a remote frame carries no data
        else:
            assert bytes(batch.data[i, : batch.dlc[i]]) == bytes(msg.data), i
        if case.fd_flags:
            flags = (bool(batch.is_fd[i]), bool(batch.flags[i] & 0x10), bool(batch.flags[i] & 0x20))
            assert flags == (msg.is_fd, msg.bitrate_switch, msg.error_state_indicator), i


def test_channels(case: FormatCase, tmp_path: Path) -> None:
    path, _ = written(case, tmp_path)
    batch, _ = read(path)
    traffic = [t for t in TRAFFIC if case.keeps(t[1])]
    want = [case.channel_name(t[5]) for t in traffic]
    assert [batch.channels[c] for c in batch.channel] == want
    assert sorted(batch.channels) == sorted(set(want))


def test_timestamps(case: FormatCase, tmp_path: Path) -> None:
    path, msgs = written(case, tmp_path)
    batch, _ = read(path)
    want = [m.timestamp for m in msgs]
    got = batch.timestamp.tolist()
    if not case.absolute_time:  # times from the start of the recording
        want = [t - want[0] for t in want]
    assert got == pytest.approx(want, abs=case.time_tolerance)


def test_error_frames(case: FormatCase, tmp_path: Path) -> None:
    if not case.errors:
        pytest.skip(f"{case.format}: its writer cannot write error frames")
    path, msgs = written(case, tmp_path)
    batch, _ = read(path)
    errors = batch.take(batch.is_error)
    sent = [m for m in msgs if m.is_error_frame]
    assert len(errors) == len(sent)
    assert (errors.flags == 0x04).all()  # an error frame is nothing else
    assert errors.dlc.tolist() == [8] * len(sent)
    if case.error_classes:  # the SocketCAN class bits and payload, exactly
        assert errors.can_id.tolist() == [m.arbitration_id for m in sent]
        assert [bytes(row) for row in errors.data[:, :8]] == [bytes(m.data) for m in sent]
    else:  # the format does not record the class: unclassified, never guessed
        assert not errors.can_id.any() and not errors.data.any()


def test_chunks_of_any_size_read_the_same(case: FormatCase, tmp_path: Path) -> None:
    path, _ = written(case, tmp_path)
    whole, _ = read(path)
    for chunk in (1, 2, 7):
        reader = CaptureReader(path, chunk_lines=chunk, block_bytes=64)
        batches = list(reader.batches())
        assert all(0 < len(b) <= chunk for b in batches)
        for before, after in itertools.pairwise(batches):
            assert after.channels[: len(before.channels)] == before.channels  # indices stable
        assert rows(FrameBatch.concat(batches)) == rows(whole)
        assert reader.stats.frames == len(whole)


def test_recognized_by_content_whatever_the_name(case: FormatCase, tmp_path: Path) -> None:
    path, _ = written(case, tmp_path)
    want = rows(read(path)[0])
    batch, reader = read(path.rename(tmp_path / "capture.dat"))
    assert reader.stats.format == case.format
    assert reader.stats.format_reason.startswith("content: ")
    assert rows(batch) == want


def test_gzip_reads_the_same(stream_case: FormatCase, tmp_path: Path) -> None:
    path, _ = written(stream_case, tmp_path)
    packed = tmp_path / f"packed{stream_case.suffix}.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    got, reader = read(packed)
    assert rows(got) == rows(read(path)[0])
    assert reader.stats.format == stream_case.format and not reader.stats.truncated


def test_standard_input_reads_the_same(stream_case: FormatCase, tmp_path: Path) -> None:
    path, _ = written(stream_case, tmp_path)
    for payload in (path.read_bytes(), gzip.compress(path.read_bytes())):
        got, reader = read("-", stdin=io.BytesIO(payload))
        assert rows(got) == rows(read(path)[0])
        assert reader.stats.format == stream_case.format and reader.stats.path == "<stdin>"


def test_formats_that_cannot_stream_say_so(file_only_case: FormatCase, tmp_path: Path) -> None:
    path, _ = written(file_only_case, tmp_path)
    packed = tmp_path / f"packed{file_only_case.suffix}.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    for source, stdin in ((packed, None), ("-", io.BytesIO(path.read_bytes()))):
        with pytest.raises(CaptureError, match="seekable, uncompressed"):
            read(source, stdin=stdin)


# -- text formats -------------------------------------------------------------------------------
def test_a_bad_line_is_skipped_and_the_rest_read(text_case: FormatCase, tmp_path: Path) -> None:
    path, _ = written(text_case, tmp_path)
    want = rows(read(path)[0])
    lines = path.read_text("latin-1").splitlines()
    frame_lines = [i for i, line in enumerate(lines) if re.match(text_case.frame_line, line)]
    at = frame_lines[2]  # frames before and after it
    lines.insert(at, text_case.bad_line)
    damaged = tmp_path / f"damaged{text_case.suffix}"
    damaged.write_text("\n".join(lines) + "\n", "latin-1")
    got, reader = read(damaged)
    assert rows(got) == want
    (bad,) = reader.stats.examples
    assert reader.stats.malformed == 1 and bad.line == at + 1
    assert bad.text == text_case.bad_line
    assert bad.reason.startswith(("candump -L: ", "ASC: ", "TRC 2.1: ", "CSV: ", "candump screen"))
    assert f"line {at + 1}: " in reader.stats.summary()


@pytest.mark.parametrize("end", ["\r\n", "\r"], ids=["crlf", "cr"])
def test_line_ends_change_nothing(text_case: FormatCase, tmp_path: Path, end: str) -> None:
    path, _ = written(text_case, tmp_path)
    want = rows(read(path)[0])
    text = path.read_bytes().replace(b"\r\n", b"\n")
    other = tmp_path / f"ends{text_case.suffix}"
    other.write_bytes(text.replace(b"\n", end.encode()))
    got, reader = read(other)
    assert rows(got) == want and reader.stats.malformed == 0
