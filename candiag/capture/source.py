"""The bytes of a capture, wherever they are stored and however they are compressed.

A capture is a file or, with ``"-"``, standard input (streamed: its first bytes are read
to tell the format, then read again from memory).  gzip is recognized by its magic bytes
(or a ``.gz`` suffix) and decompressed with a streaming ``zlib`` object rather than
:mod:`gzip`, so that a recording cut by a power loss (no gzip trailer yet) is still read
up to its last flush (the stats then say ``truncated``), several gzip members follow one
another, and a small "gzip bomb" never inflates more than one block at a time.

The format readers get the bytes as blocks (:meth:`CaptureSource.blocks`), as a binary
stream (:meth:`CaptureSource.stream`, for python-can's BLF reader) or as numbered text
lines (:meth:`CaptureSource.text_lines`).  Line ends may be LF, CRLF or CR alone; blank
lines are counted here, never given to a reader, and a line longer than
:data:`MAX_LINE_BYTES` is kept only up to that length.
"""

from __future__ import annotations

import io
import os
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np

from candiag.capture.stats import CaptureStats
from candiag.errors import CaptureError

STDIN = "-"
STDIN_NAME = "<stdin>"
SNIFF_BYTES = 4096
_GZIP_MAGIC = b"\x1f\x8b"
# A gzip member header: magic 1f 8b, method 8 (deflate), flags, mtime, xfl, os (RFC 1952).
_GZIP_HEADER_BYTES = 10
# candump lines are under 200 bytes (a 64-byte FD frame).  A longer "line" is not
# capture text (a corrupt or hostile file): only its first bytes are kept, and it is
# reported as malformed, instead of growing in memory (and quadratically in time).
MAX_LINE_BYTES = 1 << 16
# Text formats are read a MiB at a time: the per-line arrays of a block stay small.
_TEXT_BLOCK_BYTES = 1 << 20
_NL = 10
# ASCII whitespace as ``str.strip`` sees it (the readers strip their lines): a line of
# nothing but these is blank.
BLANK_BYTES = np.array([chr(b).isspace() for b in range(128)] + [False] * 128, np.bool_)


def capture_name(path: str | os.PathLike[str]) -> str:
    """How a capture is named in messages: its path, or ``<stdin>``."""
    return STDIN_NAME if os.fspath(path) == STDIN else str(Path(path))


class CaptureSource:
    """The stored bytes of one capture, their decompressed head, and ways to read them all.

    Opening checks what can be checked at once (the file exists, is a regular file, can be
    read, is not empty; standard input delivers something; gzip is gzip) and raises
    :class:`CaptureError` naming the capture and the fix.  ``stats`` receives what reading
    finds about the bytes and lines (truncated gzip, blank and cut lines, line counts).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        stats: CaptureStats,
        *,
        block_bytes: int,
        stdin: BinaryIO | None = None,
    ) -> None:
        self.is_stdin = os.fspath(path) == STDIN
        self.path = Path(path)
        self.where = capture_name(path)
        self.stats = stats
        self.block_bytes = block_bytes
        self._stdin = stdin if stdin is not None else (sys.stdin.buffer if self.is_stdin else None)
        self._consumed = False
        self._open_file: BinaryIO | None = None  # the stored bytes being read (for progress)
        if not self.is_stdin:
            self._check_readable()
        self._raw_head = self._read_head()
        self.compressed = self._raw_head.startswith(_GZIP_MAGIC) or (
            not self.is_stdin and self.path.name.lower().endswith(".gz")
        )
        self.head = self._sniff()  # the first (decompressed) bytes, for format detection
        # Old Mac-style line ends: read CR as the end of a line.
        self.cr_only = b"\r" in self.head and b"\n" not in self.head

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
                return fh.read(SNIFF_BYTES)
        head = b""
        while len(head) < SNIFF_BYTES:
            block = self._stdin.read(SNIFF_BYTES - len(head))
            if not block:
                break
            head += block
        if not head:
            raise CaptureError(
                f"{self.where}: nothing arrived on standard input; pipe a capture in"
            )
        return head

    def _sniff(self) -> bytes:
        if not self.compressed:
            return self._raw_head
        head = b""
        for block in self._gunzip(io.BytesIO(self._raw_head), 1 << 12, sniffing=True):
            head += block
            if len(head) >= SNIFF_BYTES:
                break
        return head[:SNIFF_BYTES]

    def _raw_file(self) -> BinaryIO:
        """The stored bytes from the start (standard input: only once)."""
        if self._stdin is None:
            return open(self.path, "rb")
        if self._consumed:
            raise CaptureError(f"{self.where}: standard input can be read only once")
        self._consumed = True
        return io.BufferedReader(_Chain(self._raw_head, self._stdin))

    # -- reading ----------------------------------------------------------------------------
    def blocks(self, size: int | None = None) -> Iterator[bytes]:
        """Decompressed bytes of the capture, ``size`` (default ``block_bytes``) at a time
        (gzip tolerated when cut short)."""
        size = size or self.block_bytes
        try:
            with self._raw_file() as fh:
                self._open_file = fh
                blocks = _file_blocks(fh, size) if not self.compressed else self._gunzip(fh, size)
                for block in blocks:
                    yield block.replace(b"\r", b"\n") if self.cr_only else block
        except OSError as err:
            raise CaptureError(
                f"{self.where}: read failed ({err.strerror}); check the disk or copy the file again"
            ) from err

    def progress(self) -> tuple[int, int] | None:
        """(stored bytes read so far, stored size) of a capture file being read; ``None``
        for standard input or before reading starts (a progress display's figures)."""
        fh = self._open_file
        if fh is None or self.is_stdin:
            return None
        try:
            return fh.tell(), os.fstat(fh.fileno()).st_size
        except (OSError, ValueError):  # closed, or not a real file
            return None

    def stream(self) -> BinaryIO:
        """The decompressed capture as a buffered binary stream (for python-can's readers)."""
        return io.BufferedReader(_BlockStream(self.blocks()))

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

    def text_lines(self) -> Iterator[tuple[int, str]]:
        """Numbered text lines (without their line end), for the line-oriented formats.

        Blank lines (nothing but whitespace) are counted and never reach the readers; they
        are told apart with vector operations per block, so a file of a gigabyte of
        newlines costs no Python per line.
        """
        stats = self.stats
        carry = b""
        number = 0
        for block in self.blocks(min(self.block_bytes, _TEXT_BLOCK_BYTES)):
            data = carry + block
            cut = data.rfind(b"\n") + 1
            carry = data[cut:][:MAX_LINE_BYTES]
            lines, count = _content_lines(data, cut)
            kept = 0
            for offset, raw in lines:
                kept += 1
                yield number + offset + 1, _decode(raw[:MAX_LINE_BYTES])
            stats.blank += count - kept
            number += count
            stats.lines = number
        if carry:
            number += 1
            if stats.truncated:  # torn by the cut: its last byte may be missing
                stats.bad_line(number, "line cut short by the end of the gzip stream",
                               _decode(carry))  # fmt: skip
            elif not BLANK_BYTES[np.frombuffer(carry, np.uint8)].all():
                yield number, _decode(carry)
            else:
                stats.blank += 1
        stats.lines = number


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
    np.cumsum(~BLANK_BYTES[buf], out=content[1:])
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    keep = content[ends] > content[starts]
    if keep.all():
        return enumerate(data[:cut].split(b"\n")[:-1]), len(ends)
    rows = np.flatnonzero(keep)
    bounds = zip(rows.tolist(), starts[rows].tolist(), ends[rows].tolist(), strict=True)
    return ((i, data[a:b]) for i, a, b in bounds), len(ends)


def _file_blocks(fh: IO[bytes], size: int) -> Iterator[bytes]:
    while block := fh.read(size):
        yield block


def _decode(raw: bytes) -> str:
    """A text line: UTF-8, else Latin-1 (Windows tools write 8-bit text); no CR at the end."""
    raw = raw.rstrip(b"\r")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _is_gzip_header(head: bytes) -> bool:
    """Whether ``head`` starts a whole gzip member header (a stream cut after it is a
    recording cut short; one cut inside it, or another magic, is not gzip at all)."""
    return len(head) >= _GZIP_HEADER_BYTES and head[:3] == b"\x1f\x8b\x08"
