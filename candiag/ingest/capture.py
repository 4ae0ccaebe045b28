"""Reading capture files into :class:`FrameBatch` chunks, whatever their format.

candump ``-L`` text (``.log``, ``.log.gz``, or any file whose first line looks
like one) goes through our vectorized parser in :mod:`candiag.ingest.candump`,
streamed in blocks so memory does not grow with the capture length.  ASC, BLF,
TRC and CSV go through python-can's readers (optionally ``.gz``) and are
accumulated with :class:`BatchBuilder`: they are rarer and python-can already
knows their many dialects.

gzip is decompressed with a streaming ``zlib`` object rather than :mod:`gzip`
so that a recording cut by a power loss (no gzip trailer yet) is still read up
to its last flush; the stats then say ``truncated``.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from candiag.errors import CaptureError
from candiag.ingest.candump import MalformedLine, parse_lines
from candiag.ingest.frames import BatchBuilder, FrameBatch

__all__ = ["CaptureReader", "CaptureStats", "MalformedLine", "read_capture"]

MAX_EXAMPLES = 10
CANDUMP_SUFFIXES = (".log", ".candump")
PYTHON_CAN_SUFFIXES = (".asc", ".blf", ".trc", ".csv")
_SNIFF_BYTES = 4096
# What python-can's readers raise on a damaged file (OSError: e.g. gzip.BadGzipFile).
_PYTHON_CAN_READ_ERRORS = (
    OSError, ValueError, IndexError, KeyError, struct.error, EOFError, zlib.error
)  # fmt: skip
# candump lines are under 200 bytes (a 64-byte FD frame).  A longer "line" is not
# capture text (a corrupt or hostile file): only its first bytes are kept, and it is
# reported as malformed, instead of growing in memory (and quadratically in time).
MAX_LINE_BYTES = 1 << 16


@dataclass
class CaptureStats:
    """What reading a capture found; complete once ``batches()`` is exhausted."""

    path: str
    lines: int = 0
    frames: int = 0
    malformed: int = 0
    examples: list[MalformedLine] = field(default_factory=list)  # the first 10
    format: str = ""
    truncated: bool = False  # gzip without its end marker (recording cut short)
    note: str = ""  # why reading stopped early, when it did

    def add_malformed(self, items: list[MalformedLine]) -> None:
        self.malformed += len(items)
        room = MAX_EXAMPLES - len(self.examples)
        if room > 0:
            self.examples.extend(items[:room])

    def summary(self) -> str:
        """One human line, with the first malformed lines when there are some."""
        text = f"{self.path}: {self.frames} frames from {self.lines} lines"
        if self.malformed:
            text += f", {self.malformed} malformed lines skipped"
            text += "".join(f"\n  line {m.line}: {m.reason}: {m.text!r}" for m in self.examples)
        if self.truncated:
            text += (
                "\n  the gzip stream ends early (recording cut short); read up to its last flush"
            )
        if self.note:
            text += f"\n  {self.note}"
        return text


class CaptureReader:
    """Streams a capture file as :class:`FrameBatch` chunks of at most ``chunk_lines`` lines.

    ``block_bytes`` is how much is read from disk at a time (default about 64
    bytes per chunk line, between 64 KiB and 32 MiB); it only matters for memory
    and for tests of chunk boundaries.  Channel indices are stable across the
    chunks of one file (``batch.channels`` only ever grows).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        chunk_lines: int = 262_144,
        *,
        block_bytes: int | None = None,
    ) -> None:
        if chunk_lines < 1:
            raise ValueError("chunk_lines must be at least 1")
        self.path = Path(path)
        self.chunk_lines = chunk_lines
        self.block_bytes = block_bytes or min(max(chunk_lines * 64, 1 << 16), 1 << 25)
        self.stats = CaptureStats(path=str(self.path))
        self._compressed = self.path.name.lower().endswith(".gz")
        self._check_readable()
        self.format = self._detect_format()
        self.stats.format = self.format

    # -- opening ----------------------------------------------------------------------------
    def _check_readable(self) -> None:
        where = str(self.path)
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

    def _detect_format(self) -> str:
        name = self.path.name.lower()
        base = name[:-3] if self._compressed else name
        suffix = Path(base).suffix
        if suffix in CANDUMP_SUFFIXES:
            return "candump"
        if suffix in PYTHON_CAN_SUFFIXES:
            return suffix[1:]
        head = self._sniff()
        first = next((ln.strip() for ln in head.splitlines() if ln.strip()), b"")
        if first.startswith(b"(") and b")" in first and b"#" in first:
            return "candump"
        raise CaptureError(
            f"{self.path}: unknown capture format; candiag reads candump -L text (.log, "
            ".log.gz) and, through python-can, .asc, .blf, .trc and .csv (optionally .gz). "
            "Rename the file with the right suffix or convert it with python -m can.logconvert"
        )

    def _sniff(self) -> bytes:
        head = b""
        for block in self._raw_blocks(_SNIFF_BYTES):
            head += block
            if len(head) >= _SNIFF_BYTES:
                break
        return head[:_SNIFF_BYTES]

    def _raw_blocks(self, size: int) -> Iterator[bytes]:
        """Decompressed bytes of the file (gzip tolerated when cut short)."""
        try:
            with open(self.path, "rb") as fh:
                if not self._compressed:
                    while block := fh.read(size):
                        yield block
                    return
                yield from self._gunzip(fh, size)
        except OSError as err:
            raise CaptureError(
                f"{self.path}: read failed ({err.strerror}); check the disk or copy the file again"
            ) from err

    def _gunzip(self, fh: IO[bytes], size: int) -> Iterator[bytes]:
        inflater = zlib.decompressobj(wbits=31)
        produced = False
        while True:
            block = fh.read(size)
            if not block:
                break
            while block:
                try:
                    # At most `size` bytes out per call: a small "gzip bomb" from a
                    # ticket must not inflate into gigabytes at once.
                    out = inflater.decompress(block, size)
                except zlib.error as err:
                    if not produced:
                        raise CaptureError(
                            f"{self.path}: not a valid gzip file ({err}); is it really compressed? "
                            "Remove the .gz suffix if it is plain text"
                        ) from err
                    self.stats.truncated = True
                    self.stats.note = f"gzip data corrupted after some frames ({err}); rest skipped"
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
        if not inflater.eof and produced:
            self.stats.truncated = True

    # -- reading ----------------------------------------------------------------------------
    def batches(self) -> Iterator[FrameBatch]:
        """Yield the capture as batches; :attr:`stats` is complete afterwards."""
        if self.format == "candump":
            yield from self._candump_batches()
        else:
            yield from self._python_can_batches()

    def _candump_batches(self) -> Iterator[FrameBatch]:
        channels: list[str] = []
        carry = b""
        for block in self._raw_blocks(self.block_bytes):
            data = carry + block
            cut = data.rfind(b"\n") + 1
            carry = data[cut:][:MAX_LINE_BYTES]
            if cut:
                yield from self._parse(np.frombuffer(data, np.uint8, count=cut), channels)
        if carry:
            yield from self._parse(np.frombuffer(carry + b"\n", np.uint8), channels)

    def _parse(self, buf: npt.NDArray[np.uint8], channels: list[str]) -> Iterator[FrameBatch]:
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
            self.stats.frames += len(parsed.batch)
            self.stats.add_malformed(parsed.malformed)
            if len(parsed.batch):
                yield parsed.batch

    def _python_can_batches(self) -> Iterator[FrameBatch]:
        import can.io.blf
        import can.io.player

        reader_cls: Any = can.io.player.MESSAGE_READERS[f".{self.format}"]
        read_errors = (*_PYTHON_CAN_READ_ERRORS, can.io.blf.BLFParseError)
        binary = self.format == "blf"
        try:
            if self._compressed:
                handle: Any = gzip.open(self.path, "rb" if binary else "rt")
                reader = reader_cls(handle)
            else:
                reader = reader_cls(str(self.path))
        except read_errors as err:  # e.g. struct.error on a cut BLF header
            raise CaptureError(
                f"{self.path}: python-can cannot open it as {self.format} ({err}); check that the "
                "suffix matches the content"
            ) from err
        builder = BatchBuilder(capacity=min(self.chunk_lines, 65_536))
        count = 0
        try:
            with reader:
                for msg in reader:
                    builder.add(msg)
                    count += 1
                    if len(builder) >= self.chunk_lines:
                        yield self._account(builder.build(), count)
        except read_errors as err:
            # python-can readers stop at the first record they cannot parse: keep what came
            # before and report where it stopped (record number, not a text line).
            self.stats.add_malformed(
                [MalformedLine(count + 1, f"python-can {self.format} reader stopped: {err}", "")]
            )
            self.stats.note = f"reading stopped at record {count + 1}; later records were skipped"
        if len(builder):
            yield self._account(builder.build(), count)

    def _account(self, batch: FrameBatch, count: int) -> FrameBatch:
        self.stats.frames += len(batch)
        self.stats.lines = count
        return batch


def read_capture(path: str | os.PathLike[str]) -> tuple[FrameBatch, CaptureStats]:
    """Read a whole capture into one batch (convenience for small files and tests)."""
    reader = CaptureReader(path)
    batch = FrameBatch.concat(list(reader.batches()))
    return batch, reader.stats
