"""Reading captures into :class:`FrameBatch` chunks, whatever their format and wherever from.

candump ``-L`` text (``.log``, ``.log.gz``, or anything whose content is candump ``-L``)
goes through our vectorized parser in :mod:`candiag.capture.candump`, streamed in blocks so
memory does not grow with the capture length.  Other tools' formats (Vector ASC/BLF, PEAK
TRC, python-can CSV, candump screen output, ASAM MDF 4) go through
:mod:`candiag.capture.formats`, which says what each file is and why, maps their error records
truthfully and skips a bad line without losing the rest.

The source is a file or, with ``"-"``, standard input (streamed; gzip recognized by its
magic bytes; the format by content).  gzip is decompressed with a streaming ``zlib`` object
rather than :mod:`gzip` so that a recording cut by a power loss (no gzip trailer yet) is
still read up to its last flush; the stats then say ``truncated``.  Line ends may be LF,
CRLF or CR alone.
"""

from __future__ import annotations

import io
import os
import struct
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np
import numpy.typing as npt

from candiag.capture.candump import MalformedLine, parse_lines
from candiag.capture.formats import detect as detection
from candiag.errors import CaptureError
from candiag.ingest.frames import MAX_CHANNELS, OVERFLOW_CHANNEL, ChannelTable, FrameBatch

__all__ = ["STDIN", "CaptureReader", "CaptureStats", "MalformedLine", "read_capture"]

STDIN = "-"
STDIN_NAME = "<stdin>"
MAX_EXAMPLES = 10
_SNIFF_BYTES = 4096
_GZIP_MAGIC = b"\x1f\x8b"
# What python-can's BLF reader raises on a damaged file (OSError: e.g. a read error).
_BLF_READ_ERRORS = (OSError, ValueError, IndexError, KeyError, struct.error, EOFError, zlib.error)
# candump lines are under 200 bytes (a 64-byte FD frame).  A longer "line" is not
# capture text (a corrupt or hostile file): only its first bytes are kept, and it is
# reported as malformed, instead of growing in memory (and quadratically in time).
MAX_LINE_BYTES = 1 << 16
# Text formats are read a MiB at a time: the per-line arrays of a block stay small.
_TEXT_BLOCK_BYTES = 1 << 20
_NL = 10
# ASCII whitespace as ``str.strip`` sees it (the readers strip their lines).
_BLANK_BYTES = np.array([chr(b).isspace() for b in range(128)] + [False] * 128, np.bool_)


@dataclass
class CaptureStats:
    """What reading a capture found; complete once ``batches()`` is exhausted.

    ``lines`` counts text lines (records for BLF/MF4); ``malformed`` the lines or records
    skipped, ``examples`` the first ten of them; ``blank`` the lines with nothing but
    whitespace (neither frames nor malformed).  ``overflow_frames``: frames whose channel
    name came after the first :data:`~candiag.ingest.frames.MAX_CHANNELS` distinct ones,
    read into the one channel :data:`~candiag.ingest.frames.OVERFLOW_CHANNEL`.
    ``not_frames`` counts records that are not CAN frames (ASC statistics, TRC status
    rows, BLF objects of other types) by kind.
    ``stopped_at``/``unread``: where a reader that cannot resume (a damaged BLF or MF4
    file) stopped, and how much was left (``None``: not known) in ``unread_unit``.
    """

    path: str
    lines: int = 0
    frames: int = 0
    malformed: int = 0
    blank: int = 0
    examples: list[MalformedLine] = field(default_factory=list)  # the first 10
    format: str = ""
    format_reason: str = ""
    truncated: bool = False  # gzip without its end marker (recording cut short)
    note: str = ""  # why reading stopped early, when it did
    not_frames: dict[str, int] = field(default_factory=dict)
    stopped_at: int | None = None
    unread: int | None = None
    unread_unit: str = ""
    overflow_frames: int = 0

    def add_malformed(self, items: list[MalformedLine]) -> None:
        self.malformed += len(items)
        room = MAX_EXAMPLES - len(self.examples)
        if room > 0:
            self.examples.extend(items[:room])

    # -- what format readers report (candiag.capture.formats.rows.Sink) --------------------
    def bad_line(self, line: int, reason: str, text: str) -> None:
        self.add_malformed([MalformedLine(line, reason, text[:200])])

    def not_a_frame(self, kind: str, count: int = 1) -> None:
        self.not_frames[kind] = self.not_frames.get(kind, 0) + count

    def stopped(self, at: int, unread: int | None, unit: str, reason: str) -> None:
        self.stopped_at, self.unread, self.unread_unit = at, unread, unit
        self.note = f"{reason}; {self.stop_text()}"

    def stop_text(self) -> str:
        """``reader stopped at record N, M records not read`` (empty when it did not stop)."""
        if self.stopped_at is None:
            return ""
        unit = self.unread_unit or "records"
        where = f"reader stopped at {unit.rstrip('s')} {self.stopped_at}"
        if self.unread is None:
            return f"{where}; the rest of the file was not read"
        return f"{where}, {self.unread} {unit} not read"

    def overflow_text(self) -> str:
        """What the channel cap did, in words (empty when it did nothing)."""
        if not self.overflow_frames:
            return ""
        return (
            f"more than {MAX_CHANNELS} channel names: the frames of every name after the "
            f"first {MAX_CHANNELS} ({self.overflow_frames} frames) are read into one channel "
            f"'{OVERFLOW_CHANNEL}', whose figures are not those of one bus"
        )

    def summary(self) -> str:
        """One human line, then details: format, malformed lines, what was not read."""
        text = f"{self.path}: {self.frames} frames from {self.lines} lines"
        if self.malformed:
            text += f", {self.malformed} malformed lines skipped"
        if self.blank:
            text += f", {self.blank} blank lines"
        if self.format:
            text += f"\n  read as {detection.NAMES.get(self.format, self.format)}"
            text += f" ({self.format_reason})" if self.format_reason else ""
        text += "".join(f"\n  line {m.line}: {m.reason}: {m.text!r}" for m in self.examples)
        if self.not_frames:
            kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self.not_frames.items()))
            text += f"\n  not CAN frames, counted and skipped: {kinds}"
        if self.truncated:
            text += (
                "\n  the gzip stream ends early (recording cut short); read up to its last flush"
            )
        if self.stopped_at is not None:
            text += f"\n  {self.note or self.stop_text()}"
        elif self.note:
            text += f"\n  {self.note}"
        if self.overflow_frames:
            text += f"\n  {self.overflow_text()}"
        return text


class _BlockStream(io.RawIOBase):
    """A readable binary stream over an iterator of byte blocks (decompressed input)."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self._blocks = blocks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buf:
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._buf = block
        n = min(len(target), len(self._buf))
        target[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


class CaptureReader:
    """Streams a capture as :class:`FrameBatch` chunks of at most ``chunk_lines`` lines.

    ``path`` is a file or ``"-"`` for standard input.  ``block_bytes`` is how much is read
    at a time (default about 64 bytes per chunk line, between 64 KiB and 32 MiB); it only
    matters for memory and for tests of chunk boundaries.  Channel indices are stable
    across the chunks of one capture (``batch.channels`` only ever grows).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        chunk_lines: int = 262_144,
        *,
        block_bytes: int | None = None,
        stdin: BinaryIO | None = None,
    ) -> None:
        if chunk_lines < 1:
            raise ValueError("chunk_lines must be at least 1")
        self.is_stdin = os.fspath(path) == STDIN
        self.path = Path(path)
        self.where = STDIN_NAME if self.is_stdin else str(self.path)
        self.chunk_lines = chunk_lines
        self.block_bytes = block_bytes or min(max(chunk_lines * 64, 1 << 16), 1 << 25)
        self.stats = CaptureStats(path=self.where)
        self._stdin = stdin if stdin is not None else (sys.stdin.buffer if self.is_stdin else None)
        self._consumed = False
        if not self.is_stdin:
            self._check_readable()
        self._raw_head = self._read_head()
        self._compressed = self._raw_head.startswith(_GZIP_MAGIC) or (
            not self.is_stdin and self.path.name.lower().endswith(".gz")
        )
        self._cr_only = False
        self.channels = ChannelTable()  # one table for every chunk of the capture
        self.detected = self._detect()
        self.format = self.detected.format
        self.stats.format = self.format
        self.stats.format_reason = self.detected.reason

    # -- opening ----------------------------------------------------------------------------
    def _check_readable(self) -> None:
        where = self.where
        if not self.path.exists():
            raise CaptureError(f"{where}: no such capture file; check the path")
        if not self.path.is_file():
            raise CaptureError(f"{where}: not a regular file; give the path of a capture file")
        try:
            with open(self.path, "rb") as fh:
                first = fh.read(1)
        except OSError as err:
            raise CaptureError(
                f"{where}: cannot read the capture ({err.strerror}); check its permissions"
            ) from err
        if not first:
            raise CaptureError(f"{where}: the capture file is empty; record again or pick another")

    def _read_head(self) -> bytes:
        """The first bytes as stored (standard input: kept to be read again)."""
        if self._stdin is None:
            with open(self.path, "rb") as fh:
                return fh.read(_SNIFF_BYTES)
        head = b""
        while len(head) < _SNIFF_BYTES:
            block = self._stdin.read(_SNIFF_BYTES - len(head))
            if not block:
                break
            head += block
        if not head:
            raise CaptureError(
                f"{self.where}: nothing arrived on standard input; pipe a capture in"
            )
        return head

    def _detect(self) -> detection.Detected:
        head = self._sniff()
        if b"\r" in head and b"\n" not in head:
            self._cr_only = True  # old Mac-style line ends: read CR as the end of a line
        name = "" if self.is_stdin else self.path.name
        try:
            found = detection.detect(name, head)
        except detection.Refused as err:
            raise CaptureError(f"{self.where}: {err}") from None
        if found is None:
            raise CaptureError(
                f"{self.where}: unknown capture format; candiag reads candump -L text (.log, "
                ".log.gz), Vector ASC and BLF, PEAK TRC, python-can CSV, candump screen output "
                "with timestamps and ASAM MDF 4 (optionally .gz). Convert it with "
                "python -m can.logconvert, or record with candump -L"
            )
        return found

    def _sniff(self) -> bytes:
        if not self._compressed:
            return self._raw_head
        head = b""
        for block in self._gunzip(io.BytesIO(self._raw_head), 1 << 12, sniffing=True):
            head += block
            if len(head) >= _SNIFF_BYTES:
                break
        return head[:_SNIFF_BYTES]

    def _raw_file(self) -> BinaryIO:
        """The stored bytes from the start (standard input: only once)."""
        if self._stdin is None:
            return open(self.path, "rb")
        if self._consumed:
            raise CaptureError(f"{self.where}: standard input can be read only once")
        self._consumed = True
        return io.BufferedReader(_Chain(self._raw_head, self._stdin))

    def _raw_blocks(self, size: int) -> Iterator[bytes]:
        """Decompressed bytes of the capture (gzip tolerated when cut short)."""
        try:
            with self._raw_file() as fh:
                blocks = fh_blocks(fh, size) if not self._compressed else self._gunzip(fh, size)
                for block in blocks:
                    yield block.replace(b"\r", b"\n") if self._cr_only else block
        except OSError as err:
            raise CaptureError(
                f"{self.where}: read failed ({err.strerror}); check the disk or copy the file again"
            ) from err

    def _gunzip(self, fh: IO[bytes], size: int, sniffing: bool = False) -> Iterator[bytes]:
        inflater = zlib.decompressobj(wbits=31)
        produced = False
        head = b""
        while True:
            block = fh.read(size)
            if not block:
                break
            head = head or block[:_GZIP_HEADER_BYTES]
            while block:
                try:
                    # At most `size` bytes out per call: a small "gzip bomb" from a
                    # ticket must not inflate into gigabytes at once.
                    out = inflater.decompress(block, size)
                except zlib.error as err:
                    if not produced:
                        raise CaptureError(
                            f"{self.where}: not a valid gzip file ({err}); is it really "
                            "compressed? Remove the .gz suffix if it is plain text"
                        ) from err
                    if not sniffing:
                        self.stats.truncated = True
                        self.stats.note = (
                            f"gzip data corrupted after some frames ({err}); rest skipped"
                        )
                    return
                if out:
                    produced = True
                    yield out
                if not inflater.eof:
                    block = inflater.unconsumed_tail  # input held back by the output limit
                    continue
                # A file may hold several gzip members (e.g. concatenated recordings).
                block = inflater.unused_data
                if block:
                    inflater = zlib.decompressobj(wbits=31)
        tail = inflater.flush()
        if tail:
            yield tail
            produced = True
        if not produced and not _is_gzip_header(head):
            raise CaptureError(
                f"{self.where}: the gzip stream ends before any data (file cut short or not "
                "gzip); record or copy it again"
            )
        if not inflater.eof and not sniffing:
            # A recording cut back to its header (power loss, full disk before the first
            # flush) holds no frame: an empty, truncated capture, reported as such.
            self.stats.truncated = True
            if not produced:
                self.stats.note = (
                    "the gzip stream ends before any data (recording cut short before its "
                    "first flush): no frame to read"
                )

    def _text_lines(self) -> Iterator[tuple[int, str]]:
        """Numbered text lines (without their line end), for the line-oriented formats.

        Blank lines (nothing but whitespace) are counted and never reach the readers; they
        are told apart with vector operations per block, so a file of a gigabyte of
        newlines costs no Python per line.
        """
        carry = b""
        number = 0
        for block in self._raw_blocks(min(self.block_bytes, _TEXT_BLOCK_BYTES)):
            data = carry + block
            cut = data.rfind(b"\n") + 1
            carry = data[cut:][:MAX_LINE_BYTES]
            lines, count = _content_lines(data, cut)
            kept = 0
            for offset, raw in lines:
                kept += 1
                yield number + offset + 1, _decode(raw[:MAX_LINE_BYTES])
            self.stats.blank += count - kept
            number += count
            self.stats.lines = number
        if carry:
            number += 1
            if self.stats.truncated:  # torn by the cut: its last byte may be missing
                self.stats.bad_line(number, "line cut short by the end of the gzip stream",
                                    _decode(carry))  # fmt: skip
            elif not _BLANK_BYTES[np.frombuffer(carry, np.uint8)].all():
                yield number, _decode(carry)
            else:
                self.stats.blank += 1
        self.stats.lines = number

    # -- reading ----------------------------------------------------------------------------
    def batches(self) -> Iterator[FrameBatch]:
        """Yield the capture as batches; :attr:`stats` is complete afterwards."""
        for batch in self._batches():
            self.stats.frames += len(batch)
            overflow = self.channels.overflow_index
            if overflow is not None:
                self.stats.overflow_frames += int(np.count_nonzero(batch.channel == overflow))
            yield batch

    def _batches(self) -> Iterator[FrameBatch]:
        fmt, chunk = self.format, self.chunk_lines
        channels_table = self.channels
        if fmt == "candump":
            yield from self._candump_batches()
        elif fmt == "asc":
            from candiag.capture.formats.asc import AscReader

            yield from AscReader(self.stats, channels_table, chunk).batches(self._text_lines())
        elif fmt == "trc":
            from candiag.capture.formats.trc import TrcReader

            reader = TrcReader(self.stats, channels_table, chunk, self.where)
            yield from reader.batches(self._text_lines())
        elif fmt == "csv":
            from candiag.capture.formats.csvlog import CsvReader

            yield from CsvReader(self.stats, channels_table, chunk).batches(self._text_lines())
        elif fmt == "candump-screen":
            from candiag.capture.formats.screen import ScreenReader

            assert self.detected.layout is not None
            screen = ScreenReader(self.stats, channels_table, chunk, self.detected.layout)
            yield from screen.batches(self._text_lines())
        elif fmt == "blf":
            yield from self._blf_batches(channels_table)
        elif fmt == "mf4":
            yield from self._mf4_batches(channels_table)
        else:  # pragma: no cover - detect() returns only the formats above
            raise CaptureError(f"{self.where}: no reader for format {fmt!r}")

    def _candump_batches(self) -> Iterator[FrameBatch]:
        channels = self.channels
        carry = b""
        for block in self._raw_blocks(self.block_bytes):
            data = carry + block
            cut = data.rfind(b"\n") + 1
            carry = data[cut:][:MAX_LINE_BYTES]
            if cut:
                yield from self._parse(np.frombuffer(data, np.uint8, count=cut), channels)
        if carry:
            yield from self._parse(np.frombuffer(carry + b"\n", np.uint8), channels)

    def _parse(self, buf: npt.NDArray[np.uint8], channels: ChannelTable) -> Iterator[FrameBatch]:
        nl = np.flatnonzero(buf == 10)
        step = self.chunk_lines
        for k in range(0, len(nl), step):
            begin = int(nl[k - 1]) + 1 if k else 0
            chunk_nl = nl[k : k + step]
            end = int(chunk_nl[-1]) + 1
            parsed = parse_lines(
                buf[begin:end], chunk_nl - begin, first_line=self.stats.lines + 1, channels=channels
            )
            self.stats.lines += parsed.lines
            self.stats.blank += parsed.blank
            for item in parsed.malformed:
                item.reason = f"candump -L: {item.reason}"
            self.stats.add_malformed(parsed.malformed)
            if len(parsed.batch):
                yield parsed.batch

    def _blf_batches(self, channels: ChannelTable) -> Iterator[FrameBatch]:
        from can.io.blf import BLFParseError

        from candiag.capture.formats.blf import ErrorAwareBLFReader
        from candiag.capture.formats.rows import FrameRows

        errors = (*_BLF_READ_ERRORS, BLFParseError)
        stream = io.BufferedReader(_BlockStream(self._raw_blocks(self.block_bytes)))
        try:
            reader = ErrorAwareBLFReader(stream)
        except errors as err:  # e.g. struct.error on a cut BLF header
            raise CaptureError(
                f"{self.where}: python-can cannot open it as blf ({err or type(err).__name__}); "
                "check that it is a Vector BLF file"
            ) from err
        rows = FrameRows(channels)
        count = 0
        try:
            with reader:
                for msg in reader:
                    count += 1
                    channel = str(msg.channel + 1) if isinstance(msg.channel, int) else "1"
                    if msg.is_error_frame:
                        rows.add_error(msg.timestamp, msg.arbitration_id, bytes(msg.data), channel)
                    else:
                        rows.add_message(msg, channel)
                    if len(rows) >= self.chunk_lines:
                        self.stats.lines = count
                        yield rows.build()
        except errors as err:
            announced = int(getattr(reader, "object_count", 0) or 0)
            unread = announced - count if announced > count else None
            self.stats.stopped(
                count + 1, unread, "records", f"BLF reader failed ({err or type(err).__name__})"
            )
        self.stats.lines = count
        for kind, n in sorted(reader.skipped_types.items()):
            self.stats.not_a_frame(f"BLF objects of type {kind} (not CAN frames, not read)", n)
        if len(rows):
            yield rows.build()

    def _mf4_batches(self, channels: ChannelTable) -> Iterator[FrameBatch]:
        from candiag.capture.formats.mf4 import read_mf4

        if self.is_stdin or self._compressed:
            raise CaptureError(
                f"{self.where}: MF4 needs a seekable, uncompressed file; save it to disk "
                "(and gunzip it) first"
            )
        yield from read_mf4(str(self.path), self.stats, channels, self.chunk_lines)
        self.stats.lines = self.stats.frames + self.stats.malformed


class _Chain(io.RawIOBase):
    """The sniffed head of standard input, then the rest of it."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        if self._head:
            n = min(len(target), len(self._head))
            target[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(target))
        target[: len(data)] = data
        return len(data)


def _content_lines(data: bytes, cut: int) -> tuple[Iterator[tuple[int, bytes]], int]:
    """The lines of ``data[:cut]`` (whole lines) that are not blank, with their 0-based
    line numbers, and how many lines there are in all.

    A line is blank when it holds nothing but ASCII whitespace.  The test is one pass
    of vector operations over the bytes; the usual block (no blank line) is then split as
    it always was.
    """
    buf = np.frombuffer(data, np.uint8, count=cut)
    ends = np.flatnonzero(buf == _NL)
    if not len(ends):
        return iter(()), 0
    content = np.empty(cut + 1, np.int32)  # content[i]: non-blank bytes before byte i
    content[0] = 0
    np.cumsum(~_BLANK_BYTES[buf], out=content[1:])
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    keep = content[ends] > content[starts]
    if keep.all():
        return enumerate(data[:cut].split(b"\n")[:-1]), len(ends)
    rows = np.flatnonzero(keep)
    bounds = zip(rows.tolist(), starts[rows].tolist(), ends[rows].tolist(), strict=True)
    return ((i, data[a:b]) for i, a, b in bounds), len(ends)


def fh_blocks(fh: IO[bytes], size: int) -> Iterator[bytes]:
    while block := fh.read(size):
        yield block


def _decode(raw: bytes) -> str:
    """A text line: UTF-8, else Latin-1 (Windows tools write 8-bit text); no CR at the end."""
    raw = raw.rstrip(b"\r")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def read_capture(path: str | os.PathLike[str]) -> tuple[FrameBatch, CaptureStats]:
    """Read a whole capture into one batch (convenience for small files and tests)."""
    reader = CaptureReader(path)
    batch = FrameBatch.concat(list(reader.batches()))
    return batch, reader.stats


# A gzip member header: magic 1f 8b, method 8 (deflate), flags, mtime, xfl, os (RFC 1952).
_GZIP_HEADER_BYTES = 10


def _is_gzip_header(head: bytes) -> bool:
    """Whether ``head`` starts a whole gzip member header (a stream cut after it is a
    recording cut short; one cut inside it, or another magic, is not gzip at all)."""
    return len(head) >= _GZIP_HEADER_BYTES and head[:3] == b"\x1f\x8b\x08"
