"""The reader front: any capture, from a file or standard input, as :class:`FrameBatch` chunks.

:class:`CaptureReader` opens the capture (:mod:`.source`: file or standard input, gzip
streamed), says what it is (:mod:`.detect`: content first, suffix second, and why), and
hands the bytes to that format's reader (:mod:`.formats`) in the form the reader takes:
blocks of bytes (candump ``-L``, vectorized), numbered text lines (ASC, TRC, CSV, candump
screen output), a binary stream (BLF) or the file itself (MF4).  What reading found besides
frames goes to one :class:`~.stats.CaptureStats`.  Memory does not grow with the capture's
length: every format is read in chunks of at most ``chunk_lines`` lines or records.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import BinaryIO

import numpy as np

from candiag.capture import detect as detection
from candiag.capture.formats.candump import CandumpReader
from candiag.capture.source import STDIN, CaptureSource, capture_name
from candiag.capture.stats import CaptureStats, MalformedLine
from candiag.errors import CaptureError
from candiag.ingest.frames import ChannelTable, FrameBatch

__all__ = ["STDIN", "CaptureReader", "CaptureStats", "MalformedLine", "read_capture"]


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
        self.chunk_lines = chunk_lines
        self.block_bytes = block_bytes or min(max(chunk_lines * 64, 1 << 16), 1 << 25)
        self.stats = CaptureStats(path=capture_name(path))
        self.source = CaptureSource(path, self.stats, block_bytes=self.block_bytes, stdin=stdin)
        self.is_stdin, self.path, self.where = (
            self.source.is_stdin,
            self.source.path,
            self.stats.path,
        )
        self.channels = ChannelTable()  # one table for every chunk of the capture
        self.detected = self._detect()
        self.format = self.detected.format
        self.stats.format = self.format
        self.stats.format_reason = self.detected.reason

    def _detect(self) -> detection.Detected:
        name = "" if self.is_stdin else self.path.name
        try:
            found = detection.detect(name, self.source.head)
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

    def batches(self) -> Iterator[FrameBatch]:
        """Yield the capture as batches; :attr:`stats` is complete afterwards."""
        read = _READERS.get(self.format)
        if read is None:  # pragma: no cover - detect() returns only the formats below
            raise CaptureError(f"{self.where}: no reader for format {self.format!r}")
        for batch in read(self):
            self.stats.frames += len(batch)
            overflow = self.channels.overflow_index
            if overflow is not None:
                self.stats.overflow_frames += int(np.count_nonzero(batch.channel == overflow))
            yield batch


def read_capture(path: str | os.PathLike[str]) -> tuple[FrameBatch, CaptureStats]:
    """Read a whole capture into one batch (convenience for small files and tests)."""
    reader = CaptureReader(path)
    batch = FrameBatch.concat(list(reader.batches()))
    return batch, reader.stats


# -- one entry per format: how its reader gets the capture --------------------------------------
# Readers other than candump's are imported when a capture of theirs is read (MF4 needs an
# optional extra; none of them costs start-up time).
def _candump(r: CaptureReader) -> Iterator[FrameBatch]:
    return CandumpReader(r.stats, r.channels, r.chunk_lines).batches(r.source.blocks())


def _asc(r: CaptureReader) -> Iterator[FrameBatch]:
    from candiag.capture.formats.asc import AscReader

    return AscReader(r.stats, r.channels, r.chunk_lines).batches(r.source.text_lines())


def _trc(r: CaptureReader) -> Iterator[FrameBatch]:
    from candiag.capture.formats.trc import TrcReader

    return TrcReader(r.stats, r.channels, r.chunk_lines, r.where).batches(r.source.text_lines())


def _csv(r: CaptureReader) -> Iterator[FrameBatch]:
    from candiag.capture.formats.csvlog import CsvReader

    return CsvReader(r.stats, r.channels, r.chunk_lines).batches(r.source.text_lines())


def _screen(r: CaptureReader) -> Iterator[FrameBatch]:
    from candiag.capture.formats.screen import ScreenReader

    assert r.detected.layout is not None
    reader = ScreenReader(r.stats, r.channels, r.chunk_lines, r.detected.layout)
    return reader.batches(r.source.text_lines())


def _blf(r: CaptureReader) -> Iterator[FrameBatch]:
    from candiag.capture.formats.blf import read_blf

    return read_blf(r.source.stream(), r.stats, r.channels, r.chunk_lines, r.where)


def _mf4(r: CaptureReader) -> Iterator[FrameBatch]:
    from candiag.capture.formats.mf4 import read_mf4

    if r.is_stdin or r.source.compressed:
        raise CaptureError(
            f"{r.where}: MF4 needs a seekable, uncompressed file; save it to disk "
            "(and gunzip it) first"
        )
    yield from read_mf4(str(r.path), r.stats, r.channels, r.chunk_lines)
    r.stats.lines = r.stats.frames + r.stats.malformed


_READERS: dict[str, Callable[[CaptureReader], Iterator[FrameBatch]]] = {
    "candump": _candump,
    "asc": _asc,
    "trc": _trc,
    "csv": _csv,
    "candump-screen": _screen,
    "blf": _blf,
    "mf4": _mf4,
}
