"""candump ``-L`` log text: the vectorized parser, the formatter and the rotating writer.

We wrote our own instead of using python-can's ``CanutilsLogReader``/``Writer``
because those lose error frames (the writer writes every error frame as
``20000080``, the reader turns ``20000040`` bus-off frames into data frames with
id 0x040; see docs/can-errors.md §4.4) and parse one line at a time in Python.

Line format (can-utils ``lib.c``; docs/can-errors.md §5.1)::

    (1700000000.000100) can0 123#0102          standard data frame (3 hex digits)
    (1700000000.000100) can0 18FF50E5#01020304 extended data frame (8 hex digits)
    (1700000000.000100) can0 123#R  / 123#R5   remote frame (requested length 5)
    (1700000000.000100) can0 123##1AABB        CAN FD, flags nibble (BRS 1, ESI 2)
    (1700000000.000100) can0 20000040#00...    error frame: CAN_ERR_FLAG | class bits

Parsing, in three tiers, each taking only what it decodes exactly like the next:

1. the *template path*: a capture repeats one layout (timestamp widths, channel name),
   so with the layout of a line every field of every other line is at a known offset;
   fields are gathered as unaligned 8-byte words and checked and converted with SWAR
   arithmetic on contiguous arrays in line order (about 9M lines per CPU-second);
2. the *general path* for what is left: lines grouped by *shape* (positions of ``.``,
   ``)``, the spaces and ``#``), every group decoded column-wise as a 2-D byte matrix;
3. the per-line Python parser for remote, FD, ``_`` DLC suffix, ``.`` separators and
   malformed lines, which also produces the error reasons.
"""

from __future__ import annotations

import errno
import functools
import math
import os
import re
import struct
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from candiag.errors import InputError, RecordingError
from candiag.ingest.frames import (
    CAN_EFF_MASK,
    CAN_ERR_FLAG,
    CAN_SFF_MASK,
    CLASSIC_WIDTH,
    FD_DLC_TO_LEN,
    FD_WIDTH,
    FLAG_BRS,
    FLAG_ERROR,
    FLAG_ESI,
    FLAG_EXTENDED,
    FLAG_FD,
    FLAG_REMOTE,
    ChannelTable,
    FrameBatch,
)
from candiag.ingest.metadata import RecordingMetadata, gzip_header, sidecar_path, write_sidecar

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]

_MAX_TEXT = 200  # characters of a malformed line kept for the report
_FAST_MAX_LEN = 4095  # longer lines cannot be classic frames; the slow path reports them
_FD_LENGTHS = frozenset(FD_DLC_TO_LEN)
_CAN_RTR_EFF_FLAGS = 0xC0000000
# Like the fast path (at most 18 digits in all): whole seconds then fit int64 when written.
_MAX_TIMESTAMP = 1e17
# Rotation passes over numbers another file took; this many in a row is not a race but a
# folder full of them (the writer says so instead of searching on).
_MAX_TAKEN_NUMBERS = 10_000


@dataclass
class MalformedLine:
    """A capture line that was skipped: 1-based line number, why, and its text."""

    line: int
    reason: str
    text: str


@dataclass
class ParsedChunk:
    """Result of parsing one block of complete lines."""

    batch: FrameBatch
    lines: int
    malformed: list[MalformedLine]
    blank: int = 0  # lines with nothing but whitespace (counted in ``lines``)


_HEX_UPPER = np.frombuffer(b"0123456789ABCDEF", np.uint8)

_OPEN, _CLOSE, _DOT, _SPACE, _HASH, _NL, _CR = (ord(c) for c in "(). #\n\r")
_SEPARATORS = np.frombuffer(b".)  #", np.uint8)  # in line order
_LINE_SHAPE = np.frombuffer(b"(.)  #\n", np.uint8)  # every byte below '0' in a plain line
_ZERO = ord("0")
_LITTLE_ENDIAN = sys.byteorder == "little"


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------
class _ChunkArrays:
    """Per-line output arrays of one chunk, filled by the fast and the slow path."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.reset()

    def reset(self) -> None:
        n = self.n
        self.valid: npt.NDArray[np.bool_] = np.zeros(n, np.bool_)
        self.timestamp = np.zeros(n, np.float64)
        self.can_id = np.zeros(n, np.uint32)
        self.flags = np.zeros(n, np.uint8)
        self.dlc = np.zeros(n, np.uint8)
        self.data = np.zeros((n, CLASSIC_WIDTH), np.uint8)
        self.channel = np.zeros(n, np.int16)

    def widen(self) -> None:
        if self.data.shape[1] < FD_WIDTH:
            wide = np.zeros((self.data.shape[0], FD_WIDTH), np.uint8)
            wide[:, : self.data.shape[1]] = self.data
            self.data = wide

    def merge(self, rows: npt.NDArray[np.intp], sub: _ChunkArrays) -> None:
        """Copy ``sub`` (the results for ``rows``) into these arrays."""
        if sub.data.shape[1] > self.data.shape[1]:
            self.widen()
        self.valid[rows] = sub.valid
        self.timestamp[rows] = sub.timestamp
        self.can_id[rows] = sub.can_id
        self.flags[rows] = sub.flags
        self.dlc[rows] = sub.dlc
        self.data[rows, : sub.data.shape[1]] = sub.data
        self.channel[rows] = sub.channel

    def batch(self, channels: list[str]) -> FrameBatch:
        keep: npt.NDArray[np.bool_] | slice = self.valid
        if self.valid.all():
            keep = slice(None)  # the usual case: no copy
        return FrameBatch(
            timestamp=self.timestamp[keep],
            can_id=self.can_id[keep],
            flags=self.flags[keep],
            dlc=self.dlc[keep],
            data=self.data[keep],
            channel=self.channel[keep],
            channels=list(channels),
        )


def channel_index(channels: list[str], name: str) -> int:
    """Index of ``name`` in the (growing, capped) channel table."""
    if isinstance(channels, ChannelTable):
        return channels.lookup(name)
    table = ChannelTable(channels)
    index = table.lookup(name)
    channels[len(channels) :] = table[len(channels) :]
    return index


def parse_candump(
    data: bytes | bytearray | memoryview | U8,
    *,
    first_line: int = 1,
    channels: list[str] | None = None,
) -> ParsedChunk:
    """Parse complete candump ``-L`` lines (a trailing line without ``\\n`` is accepted).

    ``first_line`` is the file line number of the first line (for error reports);
    ``channels`` is the caller's channel table, extended in place so that channel
    indices stay stable across the chunks of one file.
    """
    buf = data if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)
    if len(buf) and buf[-1] != _NL:
        buf = np.concatenate([buf, np.array([_NL], np.uint8)])
    nl = np.flatnonzero(buf == _NL)
    return parse_lines(buf, nl, first_line=first_line, channels=channels)


def parse_lines(
    buf: U8,
    nl: npt.NDArray[np.intp],
    *,
    first_line: int = 1,
    channels: list[str] | None = None,
) -> ParsedChunk:
    """Parse ``buf`` whose lines end at the newline positions ``nl`` (see parse_candump).

    Blank lines (nothing but ASCII whitespace) are neither frames nor malformed: they
    are counted in ``ParsedChunk.blank`` and cost a few vector operations, never a pass
    of the line parsers (a gigabyte of newlines is read at memory speed).
    """
    table = channels if isinstance(channels, ChannelTable) else ChannelTable(channels or ())
    n = len(nl)
    starts, ends = _line_bounds(buf, nl)
    blank = _blank_lines(buf, starts, ends)
    keep: npt.NDArray[np.intp] | None = None
    if blank is not None:
        keep = np.flatnonzero(~blank)
        buf, starts, ends = _compact_lines(buf, starts[keep], ends[keep])
    out = _ChunkArrays(len(starts))
    done = _parse_templated(buf, starts, ends, out, table) if len(starts) else out.valid
    malformed: list[MalformedLine] = []
    if not done.all():
        malformed = _parse_general(buf, starts, ends, np.flatnonzero(~done), out, table, first_line)
    if keep is not None:
        for item in malformed:  # back to the numbers of the lines in the file
            item.line = first_line + int(keep[item.line - first_line])
    if channels is not None and channels is not table:
        channels[len(channels) :] = table[len(channels) :]
    return ParsedChunk(out.batch(table), n, malformed, blank=n - len(starts))


# What ``str.strip`` takes away from an ASCII line: a line of only these is blank.
_WHITESPACE = np.array([chr(b).isspace() for b in range(128)] + [False] * 128, np.bool_)


def _blank_lines(buf: U8, starts: I64, ends: I64) -> npt.NDArray[np.bool_] | None:
    """Which lines hold nothing but whitespace; None when none does (the usual capture)."""
    if not len(starts):
        return None
    blank = ends <= starts
    # A frame line starts with '(': only lines starting with whitespace need a closer look.
    first = buf[np.minimum(starts, len(buf) - 1)]
    spaced = ~blank & _WHITESPACE[first]
    if spaced.any():
        rows = np.flatnonzero(spaced)
        if len(rows) <= 64:
            for i in rows.tolist():
                blank[i] = _WHITESPACE[buf[starts[i] : ends[i]]].all()
        else:
            content = np.zeros(len(buf) + 1, np.int64)
            np.cumsum(~_WHITESPACE[buf], out=content[1:])
            blank[rows] = content[ends[rows]] == content[starts[rows]]
    return blank if blank.any() else None


def _line_bounds(buf: U8, nl: npt.NDArray[np.intp]) -> tuple[I64, I64]:
    """Start of every line and its end without the newline (and without a CR before it)."""
    n = len(nl)
    starts = np.empty(n, np.int64)
    ends = nl.astype(np.int64, copy=False)  # not modified in place: it may be the caller's
    if n:
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        before = ends - 1
        before[0] = max(before[0], 0)
        cr = buf[before] == _CR
        if cr.any():
            ends = ends - (cr & (ends > starts))
    return starts, ends


def _parse_general(
    buf: U8,
    starts: I64,
    ends: I64,
    rows: npt.NDArray[np.intp],
    out: _ChunkArrays,
    channels: ChannelTable,
    first_line: int,
) -> list[MalformedLine]:
    """Lines of any shape: grouped column-wise decoding, then the per-line parser.

    This is the reader's original algorithm; the template path only takes what it can
    do identically and leaves everything else (and every malformed line) to it.
    """
    if len(rows) == len(starts):
        out.reset()  # the template path may have left its arrays there
        fast = _parse_fast(buf, starts, ends, out, channels)
        return _parse_slow(buf, starts, ends, np.flatnonzero(~fast), out, channels, first_line)
    sub = _ChunkArrays(len(rows))
    sub_buf, sub_starts, sub_ends = _compact_lines(buf, starts[rows], ends[rows])
    fast = _parse_fast(sub_buf, sub_starts, sub_ends, sub, channels)
    malformed = _parse_slow(
        sub_buf, sub_starts, sub_ends, np.flatnonzero(~fast), sub, channels, first_line, rows
    )
    out.merge(rows, sub)
    return malformed


def _compact_lines(buf: U8, starts: I64, ends: I64) -> tuple[U8, I64, I64]:
    """The given lines alone, each ended by a newline, when that is much less than ``buf``.

    The grouped parser makes whole-buffer passes; a few leftover lines of a big chunk
    should not cost a pass over the whole chunk each.
    """
    lengths = ends - starts + 1
    total = int(lengths.sum())
    if 4 * total > len(buf):
        return buf, starts, ends
    new_ends = np.cumsum(lengths) - 1
    new_starts = new_ends - lengths + 1
    if len(starts) <= 256:
        text = b"".join(
            buf[a:b].tobytes() + b"\n" for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
        )
        return np.frombuffer(text, np.uint8), new_starts, new_ends
    index = np.arange(total, dtype=np.int64) + np.repeat(starts - new_starts, lengths)
    compact = buf[index]
    compact[new_ends] = _NL
    return compact, new_starts, new_ends


# --------------------------------------------------------------------------------------------
# Template path: lines laid out like a first line, decoded as 8-byte words
# --------------------------------------------------------------------------------------------
# A capture almost always repeats one layout: the same timestamp widths and channel name,
# then a 3- or 8-digit identifier and 0..8 data bytes.  Given that layout, every field
# sits at a known offset from the line start (the identifier width follows from where
# the '#' is), so each field is gathered as one unaligned little-endian uint64 per line
# and validated and converted with SWAR arithmetic (eight characters per operation) on
# contiguous arrays in line order: no search for separators, no grouping, no scatter.

_TEMPLATE_RE = re.compile(rb"\((\d+)\.(\d+)\) ([\x21\x22\x24-\x27\x2a-\x7e]{1,16}) ")
_NAME_RE = re.compile(rb"[\x21\x22\x24-\x27\x2a-\x7e]+")
_MAX_TEMPLATES = 4  # layouts tried per chunk before the rest goes to the general parser
_MAX_NAMES = 16  # channel names of one layout told apart per block of lines
_BLOCK_LINES = 32_768  # lines decoded at a time: the temporaries stay in the CPU cache
_PAD_WHOLE_BYTES = 1 << 21  # chunks up to this size are copied with padding, not split
_HASH_U8 = np.uint8(_HASH)

_ONES = np.uint64(0x0101010101010101)
_HIGH = np.uint64(0x8080808080808080)
_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
_ASCII_ZEROS = np.uint64(0x3030303030303030)
_NIBBLES = np.uint64(0x0F0F0F0F0F0F0F0F)
_LOW5_BYTES = np.uint64(0x000000FFFFFFFFFF)
_ALL_BYTES = np.uint64(0xFFFFFFFFFFFFFFFF)
_B8 = np.uint64(0x00FF00FF00FF00FF)
_B16 = np.uint64(0x0000FFFF0000FFFF)
_B32 = np.uint64(0x00000000FFFFFFFF)


def _rep(byte: int) -> np.uint64:
    return np.uint64(byte * 0x0101010101010101)


def _byte_mask(first: int, stop: int) -> int:
    """Bytes ``first..stop-1`` of a little-endian word, as a mask."""
    return ((1 << (8 * stop)) - 1) ^ ((1 << (8 * first)) - 1)


# By number of hex data characters + 1 (clipped to 0..18): whether it is a whole number
# of bytes within 0..8, and the byte masks of the first and the second data word.
_DATA_LENGTH_OK = np.array([k > 0 and (k - 1) % 2 == 0 and k - 1 <= 16 for k in range(19)])
_DATA_MASKS = np.array(
    [
        [_byte_mask(0, min(max(k - 1, 0), 8)) for k in range(19)],
        [_byte_mask(0, min(max(k - 9, 0), 8)) for k in range(19)],
    ],
    np.uint64,
)
_ID_LIMIT_EXTENDED = np.uint64(0x40000000)  # 8 digits: extended ids and error classes
_ID_LIMIT_GAP = np.uint64(0x40000000 - (CAN_SFF_MASK + 1))  # 3 digits: below 0x800


@dataclass(frozen=True)
class _Word:
    """One 8-byte load of the line prefix and what its bytes must be."""

    offset: int
    literal_mask: int  # bytes that must equal literal_value ('(' '.' ')' and spaces)
    literal_value: int
    digit_mask: int  # digit bytes of the timestamp run this word carries
    run: str  # "int", "frac" or "" (no digits)
    run_length: int
    align: int  # left shift (bits) that right-aligns the run's digits
    key_mask: int  # channel name bytes


@dataclass(frozen=True)
class _Layout:
    """The shape of a line up to the identifier: ``(INT.FRAC) NAME ``."""

    nint: int
    nfrac: int
    name_length: int

    @property
    def dot(self) -> int:
        return 1 + self.nint

    @property
    def rp(self) -> int:
        return self.dot + 1 + self.nfrac

    @property
    def sp2(self) -> int:
        return self.rp + 2 + self.name_length

    @property
    def max_read(self) -> int:
        """Bytes past a line start that decoding may read (id, 16 data digits, 8-byte loads)."""
        return self.sp2 + 10 + 16 + 8

    def words(self) -> list[_Word]:
        literals = {0: _OPEN, self.dot: _DOT, self.rp: _CLOSE, self.rp + 1: _SPACE}
        literals[self.sp2] = _SPACE
        plan: list[tuple[int, str, int, int]] = []  # offset, run, first, stop (line positions)
        plan += [(o, "int", 1, self.dot) for o in range(0, self.dot, 8)]
        plan += [(o, "frac", self.dot + 1, self.rp) for o in range(self.dot, self.rp, 8)]
        plan += [(o, "", 0, 0) for o in range(self.rp + 1, self.sp2 + 1, 8)]
        covered = {p for o, *_ in plan for p in range(o, o + 8)}
        plan += [(p, "", 0, 0) for p in sorted(literals) if p not in covered]
        name = range(self.rp + 2, self.sp2)
        words = []
        for offset, run, first, stop in plan:
            lo, hi = max(first, offset) - offset, min(stop, offset + 8) - offset
            digits = _byte_mask(lo, hi) if run and hi > lo else 0
            lit_mask = lit_value = key = 0
            for pos in range(offset, offset + 8):
                if pos in literals:
                    lit_mask |= 0xFF << (8 * (pos - offset))
                    lit_value |= literals[pos] << (8 * (pos - offset))
                elif pos in name:
                    key |= 0xFF << (8 * (pos - offset))
            words.append(
                _Word(offset, lit_mask, lit_value, digits, run if digits else "",
                      max(hi - lo, 0), 8 * (8 - hi) if digits else 0, key)
            )  # fmt: skip
        return words


@functools.lru_cache(maxsize=64)
def _layout_words(layout: _Layout) -> list[_Word]:
    return layout.words()


def _layout_of(line: bytes) -> _Layout | None:
    match = _TEMPLATE_RE.match(line)
    if match is None:
        return None
    nint, nfrac = len(match.group(1)), len(match.group(2))
    if nint + nfrac > 18:
        return None
    return _Layout(nint, nfrac, len(match.group(3)))


@dataclass
class _Decoded:
    """Template-path results for some lines (values of lines not ``ok`` are meaningless)."""

    ok: npt.NDArray[np.bool_]
    timestamp: npt.NDArray[np.float64]
    can_id: npt.NDArray[np.uint32]
    flags: U8
    dlc: U8
    data: npt.NDArray[np.uint64]  # bytes 0..7, little-endian
    channel: npt.NDArray[np.int16]

    @classmethod
    def empty(cls, n: int) -> _Decoded:
        return cls(
            ok=np.empty(n, np.bool_),
            timestamp=np.empty(n, np.float64),
            can_id=np.empty(n, np.uint32),
            flags=np.empty(n, np.uint8),
            dlc=np.empty(n, np.uint8),
            data=np.empty(n, np.uint64),
            channel=np.empty(n, np.int16),
        )


def _parse_templated(
    buf: U8, starts: I64, ends: I64, out: _ChunkArrays, channels: ChannelTable
) -> npt.NDArray[np.bool_]:
    """Decode the lines that follow one of a few layouts taken from the lines themselves."""
    buf = np.ascontiguousarray(buf)  # word views need plain bytes (a no-op for chunks)
    n = len(starts)
    done = np.zeros(n, np.bool_)
    rows: npt.NDArray[np.intp] | None = None  # None: all lines
    tried: set[_Layout] = set()
    for _ in range(_MAX_TEMPLATES):
        layout = _next_layout(buf, starts, ends, rows, tried)
        if layout is None:
            break
        tried.add(layout)
        ok = _apply_layout(layout, buf, starts, ends, rows, out, channels)
        if rows is None:
            done = ok.copy()
            rows = np.flatnonzero(~ok)
        else:
            done[rows[ok]] = True
            rows = rows[~ok]
        if not len(rows):
            break
    return done


def _next_layout(
    buf: U8, starts: I64, ends: I64, rows: npt.NDArray[np.intp] | None, tried: set[_Layout]
) -> _Layout | None:
    """The layout of one of the first pending lines that was not tried yet."""
    candidates = range(min(len(starts), 16)) if rows is None else rows[:16].tolist()
    for i in candidates:
        layout = _layout_of(buf[starts[i] : ends[i]].tobytes())
        if layout is not None and layout not in tried:
            return layout
    return None


def _apply_layout(
    layout: _Layout,
    buf: U8,
    starts: I64,
    ends: I64,
    rows: npt.NDArray[np.intp] | None,
    out: _ChunkArrays,
    channels: ChannelTable,
) -> npt.NDArray[np.bool_]:
    """Decode ``rows`` (None: all) with ``layout`` into ``out``; return which succeeded."""
    s = starts if rows is None else starts[rows]
    e = ends if rows is None else ends[rows]
    decoded = _Decoded.empty(len(s))
    # The last lines of the buffer would read past its end: they get a padded copy (of
    # the whole buffer when it is small: cheaper than decoding the tail separately).
    split = int(np.searchsorted(s, len(buf) - layout.max_read, side="right"))
    if split < len(s) and len(buf) <= _PAD_WHOLE_BYTES:
        padded = np.zeros(len(buf) + layout.max_read, np.uint8)
        padded[: len(buf)] = buf
        buf, split = padded, len(s)
    for lo in range(0, split, _BLOCK_LINES):
        hi = min(lo + _BLOCK_LINES, split)
        _decode_layout(layout, buf, s[lo:hi], e[lo:hi], channels, decoded, slice(lo, hi))
    if split < len(s):
        base = int(s[split])
        tail = np.zeros(len(buf) - base + layout.max_read, np.uint8)
        tail[: len(buf) - base] = buf[base:]
        at = slice(split, len(s))
        _decode_layout(layout, tail, s[at] - base, e[at] - base, channels, decoded, at)
    _store(out, rows, decoded)
    return decoded.ok


def _store(out: _ChunkArrays, rows: npt.NDArray[np.intp] | None, d: _Decoded) -> None:
    data = d.data.astype("<u8", copy=False).view(np.uint8).reshape(-1, CLASSIC_WIDTH)
    if rows is None and out.data.shape[1] == CLASSIC_WIDTH:
        # The first layout covers every line: its arrays become the chunk's arrays.
        out.valid, out.timestamp, out.can_id = d.ok, d.timestamp, d.can_id
        out.flags, out.dlc, out.data, out.channel = d.flags, d.dlc, data, d.channel
        return
    if rows is None:
        rows = np.arange(len(d.ok))
    keep = np.flatnonzero(d.ok)
    target = rows[keep]
    out.valid[target] = True
    out.timestamp[target] = d.timestamp[keep]
    out.can_id[target] = d.can_id[keep]
    out.flags[target] = d.flags[keep]
    out.dlc[target] = d.dlc[keep]
    out.data[target, :CLASSIC_WIDTH] = data[keep]
    out.channel[target] = d.channel[keep]


def _unaligned_words(buf: U8) -> npt.NDArray[np.uint64]:
    """``words[i]`` is bytes ``i..i+7`` of ``buf`` as a little-endian uint64 (a view)."""
    return np.ndarray(shape=(len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,))


def _decode_layout(
    layout: _Layout,
    buf: U8,
    s: I64,
    e: I64,
    channels: ChannelTable,
    dest: _Decoded,
    at: slice,
) -> None:
    """Decode lines starting at ``s`` (ending at ``e``) as ``layout`` lines.

    Every byte a line needs is checked: literals exactly, digits and hex digits by
    SWAR range tests; the channel name by comparison with the names seen.  Reads past
    a line's end are masked away (the caller guarantees ``max_read`` bytes exist).
    The results go to ``dest[at]``.
    """
    words = _unaligned_words(buf)
    shifted = {w.offset: _unaligned_words(buf[w.offset :]) for w in _layout_words(layout)}
    bad = np.zeros(len(s), np.uint64)  # any set bit: the line is not a layout line
    runs: dict[str, npt.NDArray[np.uint64]] = {}
    keys: list[tuple[int, npt.NDArray[np.uint64]]] = []
    for word in _layout_words(layout):
        w = shifted[word.offset][s]  # bytes s+offset.. without an index array per word
        if word.literal_mask:
            bad |= (w ^ np.uint64(word.literal_value)) & np.uint64(word.literal_mask)
        if word.digit_mask:
            x = w ^ _ASCII_ZEROS
            bad |= (((x & _LOW7) + _rep(0x76)) | x) & (np.uint64(word.digit_mask) & _HIGH)
            x &= np.uint64(word.digit_mask)
            if word.align:
                x <<= np.uint64(word.align)
            value = _swar_decimal(x)
            previous = runs.get(word.run)
            runs[word.run] = (
                value if previous is None
                else previous * np.uint64(10**word.run_length) + value
            )  # fmt: skip
        if word.key_mask:
            keys.append((word.key_mask, w & np.uint64(word.key_mask)))
    total = runs["int"] * np.uint64(10**layout.nfrac) + runs["frac"]
    timestamp = np.asarray(total.astype(np.float64) / 10.0**layout.nfrac, np.float64)

    # Identifier: 3 digits when '#' follows them, else 8 digits.
    sp2 = layout.sp2
    std = buf[s + (sp2 + 4)] == _HASH_U8
    ext = (buf[s + (sp2 + 9)] == _HASH_U8) & ~std
    short_by = 5 * std.astype(np.int64)  # a standard id is 5 characters shorter
    hash_at = (sp2 + 9) - short_by
    ndata = (e - s) - hash_at  # data characters + 1, so that "none" is not clipped to 0
    ok = (std | ext) & np.take(_DATA_LENGTH_OK, ndata, mode="clip")
    std64 = std.astype(np.uint64)
    w = words[s + (sp2 + 1) - short_by]  # std: 3 digits in bytes 5..7
    id_mask = _ALL_BYTES - std64 * _LOW5_BYTES
    bad |= _hex_errors(w) & id_mask
    can_id = _swar_hex(_hex_nibbles(w) & id_mask)

    # Data: up to 16 hex digits in two words, masked to the line's length.
    first = s + hash_at + 1
    w = words[first]
    mask = np.take(_DATA_MASKS[0], ndata, mode="clip")
    bad |= _hex_errors(w) & mask
    data = _pack_bytes(_hex_nibbles(w) & mask)
    if (ndata > 9).any():
        w = words[first + 8]
        mask = np.take(_DATA_MASKS[1], ndata, mode="clip")
        bad |= _hex_errors(w) & mask
        data |= _pack_bytes(_hex_nibbles(w) & mask) << np.uint64(32)
    ok &= bad == 0

    # 8 digits: below 0x20000000 an extended id, 0x2....... and 0x3....... error classes
    # (CAN_ERR_FLAG without the RTR/EFF flags); anything from 0x40000000 is not a frame.
    high = can_id >> np.uint64(29)
    is_error = (high == 1) & ~std
    ok &= can_id < _ID_LIMIT_EXTENDED - std64 * _ID_LIMIT_GAP
    flags = (~std).view(np.uint8) + is_error.view(np.uint8) * np.uint8(FLAG_ERROR - FLAG_EXTENDED)
    can_id &= np.uint64(CAN_EFF_MASK)
    channel = _layout_channels(layout, buf, s, keys, ok, channels)
    dest.ok[at] = ok
    dest.timestamp[at] = timestamp
    dest.can_id[at] = can_id
    dest.flags[at] = flags
    dest.dlc[at] = ndata >> 1  # (characters + 1) // 2
    dest.data[at] = data
    dest.channel[at] = channel


def _layout_channels(
    layout: _Layout,
    buf: U8,
    s: I64,
    keys: list[tuple[int, npt.NDArray[np.uint64]]],
    ok: npt.NDArray[np.bool_],
    channels: ChannelTable,
) -> npt.NDArray[np.int16]:
    """Channel index of every line, told apart by its name bytes; clears ``ok`` of bad names.

    Names are registered in the table only when a valid line uses them, in line order.
    """
    local = np.zeros(len(s), np.int16)
    names: list[str | None] = []
    pending: npt.NDArray[np.intp] | None = None  # None: all lines
    while len(names) < _MAX_NAMES:
        first = 0 if pending is None else int(pending[0])
        same = np.ones(len(s) if pending is None else len(pending), np.bool_)
        for _, key in keys:
            column = key if pending is None else key[pending]
            same &= column == key[first]
        begin = int(s[first]) + layout.rp + 2
        name = buf[begin : begin + layout.name_length].tobytes()
        names.append(name.decode() if _NAME_RE.fullmatch(name) else None)
        if pending is None:
            local[~same] = len(names)
            pending = np.flatnonzero(~same)
        else:
            local[pending[~same]] = len(names)
            pending = pending[~same]
        if not len(pending):
            break
    names.append(None)  # lines still pending after _MAX_NAMES names: not decoded
    valid = np.array([n is not None for n in names], np.bool_)
    ok &= valid[local]
    table = np.zeros(len(names), np.int16)
    used = np.zeros(len(names), np.bool_)
    used[local[ok]] = True
    for i in np.flatnonzero(used).tolist():
        table[i] = channel_index(channels, str(names[i]))
    return table[local]


def _swar_decimal(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Value of eight right-aligned decimal digit values per word (first byte most significant)."""
    x = (x & _M8) * np.uint64(10) + ((x >> np.uint64(8)) & _M8)
    x = (x & _M16) * np.uint64(100) + ((x >> np.uint64(16)) & _M16)
    return (x & _M32) * np.uint64(10_000) + (x >> np.uint64(32))


def _swar_hex(v: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Value of eight right-aligned hex nibble values per word (first byte most significant)."""
    v = ((v & _N8) << np.uint64(4)) | ((v >> np.uint64(8)) & _N8)
    v = ((v & _N16) << np.uint64(8)) | ((v >> np.uint64(16)) & _N16)
    return ((v & np.uint64(0xFFFF)) << np.uint64(16)) | (v >> np.uint64(32))


def _hex_nibbles(w: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Per byte: '0'-'9' -> 0-9, 'A'-'F'/'a'-'f' -> 10-15 (garbage for other bytes)."""
    return (w & _NIBBLES) + ((w >> np.uint64(6)) & _ONES) * np.uint64(9)


def _hex_errors(w: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Bit 7 of every byte that is not an ASCII hex digit (mask the bytes that matter)."""
    x = w & _LOW7
    # Bit 7 of x + (0x80 - lo) says x >= lo; the xor of two such bits says lo <= x < hi.
    digit = (x + _rep(0x50)) ^ (x + _rep(0x46))  # '0' <= x <= '9'
    y = x | _rep(0x20)  # lower case
    letter = (y + _rep(0x1F)) ^ (y + _rep(0x19))  # 'a' <= y <= 'f'
    return (((digit | letter) ^ _HIGH) | w) & _HIGH  # w's bit 7: not ASCII at all


def _pack_bytes(v: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Eight nibble values (bytes 0..7) -> four bytes (bits 0..31), first nibble high."""
    t = ((v << np.uint64(4)) | (v >> np.uint64(8))) & _B8
    t = (t | (t >> np.uint64(8))) & _B16
    return (t | (t >> np.uint64(16))) & _B32


def _occurrences(buf: U8, char: int, starts: I64, ends: I64) -> tuple[I64, I64, I64]:
    """Positions of ``char``, and per line the index of its first one and its count."""
    pos = np.flatnonzero(buf == char).astype(np.int64)
    lo = np.searchsorted(pos, starts)
    hi = np.searchsorted(pos, ends)
    return pos, lo.astype(np.int64), (hi - lo).astype(np.int64)


def _first(pos: I64, lo: I64, count: I64, starts: I64, offset: int = 0) -> I64:
    """Per line, position (relative to the line start) of occurrence number ``offset``."""
    idx = np.minimum(lo + offset, max(len(pos) - 1, 0))
    rel = (pos[idx] if len(pos) else np.zeros_like(lo)) - starts
    return np.where(count > offset, rel, -1)


def _locate_uniform(buf: U8, starts: I64, cend: I64) -> tuple[I64, I64, I64, I64, I64] | None:
    """Field separators when every line has exactly ``. ) space space #`` in that order.

    This is the usual capture, and it needs no per-line search: one pass finds
    all separators, the k-th group belongs to the k-th line, which is verified
    (a line with one more or one less breaks the alignment).  The quickest pass
    takes every byte below ``'0'``: in a plain line those are exactly
    ``( . ) space space # newline``; channel names with e.g. ``-`` fall back to
    looking for the four separators only.
    """
    n = len(starts)
    below_zero = np.flatnonzero(buf < _ZERO)
    if len(below_zero) == n * len(_LINE_SHAPE):
        grid = below_zero.reshape(n, len(_LINE_SHAPE))
        if (
            (buf[grid] == _LINE_SHAPE).all()
            and (grid[:, 0] == starts).all()
            and (grid[:, -1] == cend).all()
        ):
            dot, rp, sp1, sp2, h = (grid[:, 1:-1] - starts[:, None]).T
            return rp, h, sp1, sp2, dot
    special = (buf == _DOT) | (buf == _CLOSE) | (buf == _SPACE) | (buf == _HASH)
    pos = np.flatnonzero(special)
    if len(pos) != n * len(_SEPARATORS):
        return None
    grid = pos.reshape(n, len(_SEPARATORS))
    if not (buf[grid] == _SEPARATORS).all():
        return None
    rel = grid - starts[:, None]
    if rel[:, 0].min() < 0 or (rel[:, -1] >= cend - starts).any():
        return None
    dot, rp, sp1, sp2, h = rel.T
    return rp, h, sp1, sp2, dot


def _locate_general(
    buf: U8, starts: I64, cend: I64
) -> tuple[I64, I64, I64, I64, I64, npt.NDArray[np.bool_]]:
    """Field separators of each line by search, with a mask of lines having the right counts."""
    cpos, clo, ccount = _occurrences(buf, _CLOSE, starts, cend)
    hpos, hlo, hcount = _occurrences(buf, _HASH, starts, cend)
    spos, slo, scount = _occurrences(buf, _SPACE, starts, cend)
    dpos, dlo, dcount = _occurrences(buf, _DOT, starts, cend)
    rp = _first(cpos, clo, ccount, starts)
    h = _first(hpos, hlo, hcount, starts)
    sp1 = _first(spos, slo, scount, starts)
    sp2 = _first(spos, slo, scount, starts, 1)
    dot = _first(dpos, dlo, dcount, starts)
    counts_ok = (ccount == 1) & (hcount == 1) & (scount == 2) & (dcount >= 1)
    return rp, h, sp1, sp2, dot, counts_ok


def _parse_fast(
    buf: U8, starts: I64, ends: I64, out: _ChunkArrays, channels: ChannelTable
) -> npt.NDArray[np.bool_]:
    """Decode all classic-shaped lines column-wise; return the mask of lines done."""
    n = len(starts)
    done = np.zeros(n, np.bool_)
    if n == 0:
        return done
    # can-utils -x logs end lines with " R"/" T" (direction); data never contains spaces.
    last = buf[np.maximum(ends - 1, 0)]
    has_dir = ((ends - starts) >= 2) & (buf[np.maximum(ends - 2, 0)] == _SPACE)
    has_dir &= (last == ord("R")) | (last == ord("T"))
    cend = ends - 2 * has_dir
    length = cend - starts

    located = _locate_uniform(buf, starts, cend)
    if located is not None:
        rp, h, sp1, sp2, dot = located
        counts_ok = np.ones(n, np.bool_)
    else:
        rp, h, sp1, sp2, dot, counts_ok = _locate_general(buf, starts, cend)
    idw = h - sp2 - 1
    ndata = length - h - 1
    nint = dot - 1
    nfrac = rp - dot - 1
    cand = (
        (length > 0) & (length <= _FAST_MAX_LEN) & (buf[np.minimum(starts, len(buf) - 1)] == _OPEN)
    )
    cand &= counts_ok & (sp1 == rp + 1) & (sp2 > sp1 + 1) & (nint >= 1) & (nfrac >= 1)
    cand &= (nint + nfrac <= 18) & ((idw == 3) | (idw == 8))
    cand &= (ndata >= 0) & (ndata <= 2 * CLASSIC_WIDTH) & (ndata % 2 == 0)
    rows = np.flatnonzero(cand)
    if len(rows) == 0:
        return done
    # One int64 key per line shape (every field < 4096, checked above).
    key = dot[rows]
    for part in (rp, sp2, h, length):
        key = (key << 12) | part[rows]
    for k in np.unique(key).tolist():
        lines = rows[key == k]
        k_len = k & 0xFFF
        shape = ((k >> 48) & 0xFFF, (k >> 36) & 0xFFF, (k >> 24) & 0xFFF, (k >> 12) & 0xFFF, k_len)
        # Rows of a strided window view: one index per line, no per-byte index array.
        matrix = sliding_window_view(buf, k_len)[starts[lines]]
        ok = _decode_group(matrix, lines, shape, out, channels)
        done[lines[ok]] = True
    return done


def _decode_group(
    m: U8,
    lines: I64,
    shape: tuple[int, int, int, int, int],
    out: _ChunkArrays,
    channels: ChannelTable,
) -> npt.NDArray[np.bool_]:
    """Decode identically shaped lines; return which rows were valid (others go slow).

    Validity is checked on whole matrices first (one flat reduction each) and
    row by row only when something is wrong, which is rare.
    """
    dot, rp, sp2, h, length = shape
    int_digits, bad = _decimal_digits(m[:, 1:dot])
    frac_digits, bad_frac = _decimal_digits(m[:, dot + 1 : rp])
    id_hex, bad_id = _hex_digits(m[:, sp2 + 1 : h])
    data_hex, bad_data = _hex_digits(m[:, h + 1 : length])
    name_bytes = m[:, rp + 2 : sp2]
    bad_name = (name_bytes <= _SPACE) | (name_bytes >= 127)  # printable ASCII only
    ok = np.ones(len(lines), np.bool_)
    for problem in (bad, bad_frac, bad_id, bad_data, bad_name):
        if problem.size and problem.any():
            ok &= ~problem.any(axis=1)
    can_id = _hex_to_int(id_hex)
    if h - sp2 - 1 == 3:
        ok &= can_id <= CAN_SFF_MASK
        flags = np.zeros(len(lines), np.uint8)
    else:
        is_error = ((can_id & _CAN_RTR_EFF_FLAGS) == 0) & ((can_id & CAN_ERR_FLAG) != 0)
        ok &= (can_id <= CAN_EFF_MASK) | is_error
        flags = np.where(is_error, FLAG_ERROR, FLAG_EXTENDED).astype(np.uint8)
        can_id &= CAN_EFF_MASK
    if not ok.all():
        rows = np.flatnonzero(ok)
        if len(rows) == 0:
            return ok
        lines, can_id, flags = lines[rows], can_id[rows], flags[rows]
        int_digits, frac_digits, data_hex = int_digits[rows], frac_digits[rows], data_hex[rows]
        name_bytes = name_bytes[rows]
    out.timestamp[lines] = _timestamps(int_digits, frac_digits)
    out.can_id[lines] = can_id
    out.flags[lines] = flags
    nbytes = (length - h - 1) // 2
    out.dlc[lines] = nbytes
    if nbytes:
        out.data[lines, :nbytes] = (data_hex[:, 0::2] << 4) | data_hex[:, 1::2]
    out.channel[lines] = _channel_indices(name_bytes, channels)
    out.valid[lines] = True
    return ok


def _decimal_digits(chars: U8) -> tuple[U8, npt.NDArray[np.bool_]]:
    """Digit values of ASCII decimal characters, and where they are not digits."""
    values = chars - np.uint8(ord("0"))  # wraps below '0', so one comparison suffices
    return values, values > 9


def _hex_digits(chars: U8) -> tuple[U8, npt.NDArray[np.bool_]]:
    """Nibble values of ASCII hex characters (either case), and where they are not hex.

    ``(c & 15) + 9 * (c >> 6)`` maps '0'-'9' to 0-9 and 'A'-'F'/'a'-'f' to 10-15 in three
    vector operations (a lookup table is slower here); the validity mask is separate.
    """
    values = (chars & np.uint8(15)) + np.uint8(9) * (chars >> np.uint8(6))
    not_digit = (chars - np.uint8(ord("0"))) > 9
    not_letter = ((chars | np.uint8(0x20)) - np.uint8(ord("a"))) > 5
    return values, not_digit & not_letter


def _timestamps(int_digits: U8, frac_digits: U8) -> npt.NDArray[np.float64]:
    """Seconds from decimal digit columns.

    Integer and fraction are combined into one integer count of fraction units
    before the single division, so the result is the correctly rounded double
    (the same as ``float(text)``) whenever that count is below 2**53.
    """
    value = _decimal_value(np.concatenate([int_digits, frac_digits], axis=1))
    return np.asarray(value.astype(np.float64) / 10.0 ** frac_digits.shape[1], np.float64)


def _right_aligned(values: U8, width: int) -> U8:
    padded = np.zeros((values.shape[0], width), np.uint8)
    padded[:, width - values.shape[1] :] = values
    return padded


def _decimal_value(digits: U8) -> npt.NDArray[np.uint64]:
    """Integer value of each row of decimal digit values (at most 19 digits).

    SWAR: eight digits sit in one uint64 and are combined pairwise in three
    multiply-add steps, ten times faster than a float matrix product here.
    """
    n, k = digits.shape
    if not _LITTLE_ENDIAN:
        acc = np.zeros(n, np.uint64)
        for j in range(k):
            acc = acc * np.uint64(10) + digits[:, j]
        return acc
    words = max(1, -(-k // 8))
    x = _right_aligned(digits, 8 * words).view(np.uint64)
    x = (x & _M8) * np.uint64(10) + ((x >> np.uint64(8)) & _M8)
    x = (x & _M16) * np.uint64(100) + ((x >> np.uint64(16)) & _M16)
    x = (x & _M32) * np.uint64(10_000) + (x >> np.uint64(32))
    value = x[:, 0]
    for w in range(1, words):
        value = value * np.uint64(100_000_000) + x[:, w]
    return value


def _hex_to_int(hex_digits: U8) -> npt.NDArray[np.uint32]:
    """Integer value of each row of hex digit values (at most 8 digits), SWAR as above."""
    n, k = hex_digits.shape
    if not _LITTLE_ENDIAN:
        acc = np.zeros(n, np.uint32)
        for j in range(k):
            acc = (acc << np.uint32(4)) | hex_digits[:, j]
        return acc
    x = _right_aligned(hex_digits, 8).view(np.uint64)[:, 0]
    x = ((x & _N8) << np.uint64(4)) | ((x >> np.uint64(8)) & _N8)
    x = ((x & _N16) << np.uint64(8)) | ((x >> np.uint64(16)) & _N16)
    x = ((x & np.uint64(0xFFFF)) << np.uint64(16)) | (x >> np.uint64(32))
    return x.astype(np.uint32)


_M8 = np.uint64(0x00FF00FF00FF00FF)
_M16 = np.uint64(0x0000FFFF0000FFFF)
_M32 = np.uint64(0x00000000FFFFFFFF)
_N8 = np.uint64(0x000F000F000F000F)
_N16 = np.uint64(0x000000FF000000FF)


def _channel_indices(name_bytes: U8, channels: ChannelTable) -> npt.NDArray[np.int16]:
    """Channel table indices of fixed-width channel names (usually all the same)."""
    first = name_bytes[0]
    if len(name_bytes) == 1 or (name_bytes == first).all():
        return np.full(len(name_bytes), channel_index(channels, first.tobytes().decode()), np.int16)
    names = np.ascontiguousarray(name_bytes).view(f"S{name_bytes.shape[1]}").reshape(-1)
    uniq, which = np.unique(names, return_inverse=True)
    lut = np.array([channel_index(channels, u.decode()) for u in uniq.tolist()], np.int16)
    return lut[which.reshape(-1)]


def _parse_slow(
    buf: U8,
    starts: I64,
    ends: I64,
    rows: npt.NDArray[np.intp],
    out: _ChunkArrays,
    channels: ChannelTable,
    first_line: int,
    line_index: npt.NDArray[np.intp] | None = None,
) -> list[MalformedLine]:
    """Per-line parser for the odd lines; returns the malformed ones.

    ``line_index`` maps row ``i`` to its line in the chunk when the rows are a subset.
    """
    malformed: list[MalformedLine] = []
    for i in rows.tolist():
        raw = buf[starts[i] : ends[i]].tobytes()
        parsed = parse_line(raw)
        if isinstance(parsed, str):
            text = raw.decode("utf-8", errors="backslashreplace")[:_MAX_TEXT]
            line = first_line + (i if line_index is None else int(line_index[i]))
            malformed.append(MalformedLine(line, parsed, text))
            continue
        ts, channel, can_id, flags, dlc, payload = parsed
        if len(payload) > out.data.shape[1]:
            out.widen()
        out.timestamp[i] = ts
        out.can_id[i] = can_id
        out.flags[i] = flags
        out.dlc[i] = dlc
        if payload:
            out.data[i, : len(payload)] = np.frombuffer(payload, np.uint8)
        out.channel[i] = channel_index(channels, channel)
        out.valid[i] = True
    return malformed


_TIMESTAMP_RE = re.compile(r"\((\d+(?:\.\d+)?)\)")
_HEX_RE = re.compile(r"[0-9A-Fa-f]*")
_REMOTE_RE = re.compile(r"[Rr]([0-9A-Fa-f])?(?:_[0-9A-Fa-f])?")

ParsedLine = tuple[float, str, int, int, int, bytes]


def parse_line(raw: bytes) -> ParsedLine | str:
    """Parse one candump ``-L`` line: (timestamp, channel, can_id, flags, dlc, data) or a reason."""
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        return "not text: the line holds non-ASCII bytes (binary data or a corrupted file)"
    if not text:
        return "empty line"
    fields = text.split()
    if len(fields) == 4 and fields[3] in ("R", "T", "r", "t"):
        fields = fields[:3]
    if len(fields) != 3:
        return f"expected 3 fields '(timestamp) channel id#data', found {len(fields)}" + (
            " (is the channel name missing?)" if len(fields) == 2 else ""
        )
    stamp, channel, frame = fields
    match = _TIMESTAMP_RE.fullmatch(stamp)
    if match is None:
        return f"bad timestamp {stamp!r}: expected '(seconds.microseconds)'"
    timestamp = float(match.group(1))
    if not math.isfinite(timestamp):
        return f"bad timestamp {stamp!r}: not a finite number"
    if timestamp >= _MAX_TIMESTAMP:
        return f"bad timestamp {stamp!r}: more than 17 digits of seconds"
    ident, sep, rest = frame.partition("#")
    if not sep:
        return f"no '#' between identifier and data in {frame!r}"
    if len(ident) not in (3, 8):
        return f"identifier {ident!r} must be 3 (standard) or 8 (extended) hex digits, not {len(ident)}"
    if not _HEX_RE.fullmatch(ident):
        return f"identifier {ident!r} is not hexadecimal"
    return _parse_frame(timestamp, channel, int(ident, 16), len(ident) == 8, rest)


def _parse_frame(
    ts: float, channel: str, raw_id: int, extended: bool, rest: str
) -> ParsedLine | str:
    flags = 0
    if not extended:
        if raw_id > CAN_SFF_MASK:
            return f"standard identifier 0x{raw_id:03X} is above 0x7FF"
    elif raw_id & CAN_ERR_FLAG and not raw_id & _CAN_RTR_EFF_FLAGS:
        flags = int(FLAG_ERROR)
    elif raw_id > CAN_EFF_MASK:
        return f"extended identifier 0x{raw_id:08X} is above 0x1FFFFFFF"
    else:
        flags = int(FLAG_EXTENDED)
    can_id = raw_id & CAN_EFF_MASK
    if rest.startswith("##"):
        return "CAN XL frames ('###') are not supported"
    if rest.startswith("#"):
        return _parse_fd(ts, channel, can_id, flags, rest[1:])
    if _REMOTE_RE.fullmatch(rest):
        if flags & FLAG_ERROR:
            return "an error frame cannot be a remote frame"
        dlc = int(rest[1], 16) if len(rest) > 1 and rest[1] != "_" else 0
        if dlc > CLASSIC_WIDTH:
            return f"remote frame length {dlc} is above 8"
        return ts, channel, can_id, flags | int(FLAG_REMOTE), dlc, b""
    body, _, dlc_code = rest.partition("_")
    payload = _hex_payload(body)
    if isinstance(payload, str):
        return payload
    if len(payload) > CLASSIC_WIDTH:
        return f"{len(payload)} data bytes in a classic CAN frame (at most 8; CAN FD uses '##')"
    if dlc_code and (len(payload) != CLASSIC_WIDTH or not _HEX_RE.fullmatch(dlc_code)):
        return f"DLC suffix '_{dlc_code}' is only valid after 8 data bytes"
    return ts, channel, can_id, flags, len(payload), payload


def _parse_fd(ts: float, channel: str, can_id: int, flags: int, rest: str) -> ParsedLine | str:
    if flags & FLAG_ERROR:
        return "an error frame cannot be a CAN FD frame"
    if not rest or not _HEX_RE.fullmatch(rest[0]):
        return "CAN FD frame needs a flags hex digit after '##'"
    fd_flags = int(rest[0], 16)
    payload = _hex_payload(rest[1:])
    if isinstance(payload, str):
        return payload
    if len(payload) not in _FD_LENGTHS:
        return f"{len(payload)} data bytes is not a CAN FD length (0-8, 12, 16, 20, 24, 32, 48, 64)"
    flags |= int(FLAG_FD)
    flags |= int(FLAG_BRS) if fd_flags & 0x1 else 0
    flags |= int(FLAG_ESI) if fd_flags & 0x2 else 0
    return ts, channel, can_id, flags, len(payload), payload


def _hex_payload(body: str) -> bytes | str:
    digits = body.replace(".", "")
    if not _HEX_RE.fullmatch(digits):
        return f"data {body!r} is not hexadecimal"
    if len(digits) % 2:
        return f"data {body!r} has an odd number of hex digits (a byte is cut)"
    return bytes.fromhex(digits)


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------
def format_candump(batch: FrameBatch) -> bytes:
    """candump ``-L`` lines for ``batch`` (uppercase hex, microsecond timestamps).

    Classic data and error frames are formatted as byte matrices per (channel,
    id width, length) group; remote and FD frames (rare) line by line.
    """
    n = len(batch)
    if n == 0:
        return b""
    seconds, fraction = _split_timestamps(batch.timestamp)
    int_width = max(10, len(str(int(seconds.max())))) if n else 10
    is_error = batch.is_error
    id_width = np.where(batch.is_extended | is_error, 8, 3)
    raw_id = batch.can_id.astype(np.uint32) | np.where(is_error, CAN_ERR_FLAG, 0).astype(np.uint32)
    names = [_channel_token(c) for c in batch.channels] or [b"can0"]
    odd = ((batch.flags & (FLAG_REMOTE | FLAG_FD)) != 0) & ~is_error
    odd |= seconds < 0
    name_len = np.array([len(c) for c in names], np.int64)[batch.channel]
    head = 1 + int_width + 1 + 6 + 1 + 1
    dlc = np.minimum(batch.dlc.astype(np.int64), batch.data.shape[1])
    lengths = head + name_len + 1 + id_width + 1 + 2 * dlc + 1
    odd_lines = {
        i: _format_odd(batch, i, names, int(seconds[i]), int(fraction[i]), int_width)
        for i in np.flatnonzero(odd).tolist()
    }
    for i, line in odd_lines.items():
        lengths[i] = len(line)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    out = np.empty(int(offsets[-1]), np.uint8)
    regular = np.flatnonzero(~odd)
    if len(regular):
        key = (batch.channel[regular].astype(np.int64) * 2 + (id_width[regular] == 8)) * 65 + dlc[
            regular
        ]
        for k in np.unique(key).tolist():
            rows = regular[key == k]
            ch, rem = divmod(k, 65 * 2)
            wide, nbytes = divmod(rem, 65)
            matrix = _format_group(
                seconds[rows], fraction[rows], int_width, names[ch], raw_id[rows],
                8 if wide else 3, batch.data[rows, :nbytes],
            )  # fmt: skip
            out[offsets[rows][:, None] + np.arange(matrix.shape[1])] = matrix
    for i, line in odd_lines.items():
        out[offsets[i] : offsets[i + 1]] = np.frombuffer(line, np.uint8)
    return out.tobytes()


def _channel_token(name: str) -> bytes:
    """A channel name as one printable-ASCII token (python-can channels can be anything)."""
    token = re.sub(r"[^\x21-\x7e]", "_", str(name)).replace("#", "_").replace(")", "_")
    return (token or "can0").encode("ascii")


def _format_group(
    seconds: I64,
    fraction: I64,
    int_width: int,
    name: bytes,
    raw_id: npt.NDArray[np.uint32],
    id_width: int,
    data: U8,
) -> U8:
    """Lines of identical shape as a byte matrix."""
    rows, nbytes = data.shape
    parts: list[U8] = [
        np.full((rows, 1), _OPEN, np.uint8),
        _decimal(seconds, int_width),
        np.full((rows, 1), _DOT, np.uint8),
        _decimal(fraction, 6),
        np.frombuffer(b") " + name + b" ", np.uint8)[None, :].repeat(rows, axis=0),
        _HEX_UPPER[(raw_id[:, None] >> (4 * np.arange(id_width - 1, -1, -1))) & 0xF],
        np.full((rows, 1), _HASH, np.uint8),
    ]
    if nbytes:
        hexdata = np.empty((rows, 2 * nbytes), np.uint8)
        hexdata[:, 0::2] = _HEX_UPPER[data >> 4]
        hexdata[:, 1::2] = _HEX_UPPER[data & 0xF]
        parts.append(hexdata)
    parts.append(np.full((rows, 1), _NL, np.uint8))
    return np.concatenate(parts, axis=1)


def _decimal(values: I64, width: int) -> U8:
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((values[:, None] // powers) % 10 + ord("0")).astype(np.uint8)


def _split_timestamps(timestamp: npt.NDArray[np.float64]) -> tuple[I64, I64]:
    """Whole seconds and microseconds, rounded like ``%.6f``.

    The fraction is taken before scaling: ``ts * 1e6`` of an epoch timestamp has
    an error close to one microsecond unit, ``(ts - floor(ts)) * 1e6`` does not.
    """
    whole = np.floor(timestamp)
    micros = np.rint((timestamp - whole) * 1e6).astype(np.int64)
    seconds = whole.astype(np.int64)
    carry = micros >= 1_000_000
    return seconds + carry, micros - 1_000_000 * carry


def _format_odd(
    batch: FrameBatch, i: int, names: list[bytes], sec: int, frac: int, int_width: int
) -> bytes:
    sign = ""
    if sec < 0:  # not produced by candump; written so that nothing is silently dropped
        sign, total = "-", -(sec * 1_000_000 + frac)
        sec, frac = divmod(total, 1_000_000)
    flags = int(batch.flags[i])
    name = names[int(batch.channel[i])].decode()
    can_id = int(batch.can_id[i])
    ident = f"{can_id:08X}" if flags & FLAG_EXTENDED else f"{can_id:03X}"
    nbytes = int(batch.dlc[i])
    if flags & FLAG_ERROR:
        ident = f"{can_id | CAN_ERR_FLAG:08X}"
    if flags & FLAG_REMOTE and not flags & FLAG_ERROR:
        body = "R" + (f"{nbytes:X}" if nbytes else "")
    elif flags & FLAG_FD:
        fd_flags = (1 if flags & FLAG_BRS else 0) | (2 if flags & FLAG_ESI else 0)
        body = f"#{fd_flags:X}" + batch.data[i, :nbytes].tobytes().hex().upper()
    else:
        body = batch.data[i, :nbytes].tobytes().hex().upper()
    return f"({sign}{sec:0{int_width}d}.{frac:06d}) {name} {ident}#{body}\n".encode()


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
class _WriteFully:
    """A file whose ``write`` writes everything or raises.

    An unbuffered file may write part of the data (a disk filling up); a compressed
    stream that went on after such a short count would be silently corrupt.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        done = 0
        while done < len(view):
            done += self.raw.write(view[done:])
        return done

    def flush(self) -> None:
        self.raw.flush()


class _GzipMember:
    """One gzip member written by hand: header, raw deflate stream, CRC-32 and size trailer.

    :class:`gzip.GzipFile` cannot write the header's FCOMMENT field, which carries the
    recording metadata (:func:`candiag.ingest.metadata.gzip_header`); the stream itself is
    what ``GzipFile`` writes (zlib level 9, ``Z_SYNC_FLUSH`` points, RFC 1952 trailer).
    """

    def __init__(self, out: _WriteFully, header: bytes) -> None:
        self.out = out
        self._deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        self._crc = 0
        self._size = 0
        out.write(header)

    def write(self, data: bytes) -> None:
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        compressed = self._deflate.compress(data)
        if compressed:
            self.out.write(compressed)

    def sync_flush(self) -> None:
        """A point up to which the file decodes without a trailer."""
        self.out.write(self._deflate.flush(zlib.Z_SYNC_FLUSH))

    def close(self) -> None:
        trailer = struct.pack("<II", self._crc, self._size & 0xFFFFFFFF)
        self.out.write(self._deflate.flush(zlib.Z_FINISH) + trailer)


class CandumpWriter:
    """Writes batches as candump ``-L`` text to ``.log`` or ``.log.gz`` files.

    * Rotation: with ``rotate_bytes`` (on-disk size) and/or ``rotate_seconds`` the
      files are numbered ``<stem>.0001.log[.gz]``, ``<stem>.0002...``; a file is
      closed at the first batch boundary past the limit.  Without rotation the
      file is exactly ``path``.  Existing files are never overwritten: a rotating
      recording starts after the highest number already in the folder and passes
      over any number taken meanwhile (a file, or a ``.log`` file's metadata sidecar),
      so a name that exists never stops it; without rotation an existing ``path`` is
      refused before anything is recorded.
    * Durability: data is flushed (gzip: ``Z_SYNC_FLUSH``, so the file decodes up to
      that point without a trailer) and ``fsync``-ed once ``flush_interval`` has
      passed since the last flush, on :meth:`write` or :meth:`flush_if_due`.  A
      caller whose writes may stop (a silent bus) calls ``flush_if_due()``
      periodically; the recorder does so every 0.1 s, so a power cut loses at most
      ``flush_interval`` seconds.
    * Errors: any ``OSError`` (disk full, permission) becomes :class:`RecordingError`
      naming the file and the fix, and the file is cut back so that it never ends in a
      torn line (which a reader would report as malformed, or parse as a shorter
      frame): ``.log`` to its last complete line, ``.log.gz`` to its last flush point.
      The file is written unbuffered (one ``write`` per batch): a killed process
      loses nothing it wrote, and nothing can land after that cut.
    * Metadata: with ``metadata`` every file (each rotated one too) carries the recording
      metadata, stamped with the time it was opened: ``.log.gz`` in its gzip header's
      comment, ``.log`` in a sidecar ``<file>.meta.json`` written before the first frame
      (:mod:`candiag.ingest.metadata`; an existing sidecar is never overwritten either).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        rotate_bytes: int | None = None,
        rotate_seconds: float | None = None,
        flush_interval: float = 1.0,
        fsync: bool = True,
        clock: Callable[[], float] = time.monotonic,
        metadata: RecordingMetadata | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        path = Path(path)
        name = path.name
        if name.endswith(".log.gz"):
            self._stem, self._suffix = name[: -len(".log.gz")], ".log.gz"
        elif name.endswith(".log"):
            self._stem, self._suffix = name[: -len(".log")], ".log"
        else:
            raise InputError(
                f"{path}: a recording must end in .log or .log.gz (candump -L text); "
                "rename the output file"
            )
        if rotate_bytes is not None and rotate_bytes <= 0:
            raise InputError(f"rotate size must be positive, got {rotate_bytes} bytes")
        if rotate_seconds is not None and rotate_seconds <= 0:
            raise InputError(f"rotate time must be positive, got {rotate_seconds} s")
        self._dir = path.parent
        self._path = path
        self._rotating = rotate_bytes is not None or rotate_seconds is not None
        self._rotate_bytes = rotate_bytes
        self._rotate_seconds = rotate_seconds
        self._flush_interval = flush_interval
        self._fsync = fsync
        self._clock = clock
        self._wall_clock = wall_clock
        self.metadata = metadata
        self.frames_written = 0
        self.files: list[Path] = []
        self._raw: BinaryIO | None = None
        self._gz: _GzipMember | None = None
        self._dirty = False
        self._safe_size = 0  # file bytes ending on a whole line (.log.gz: at a sync point)
        self._opened_at = 0.0
        self._flushed_at = 0.0
        self._rotated = False  # the next file is opened on the next frames, never empty
        self._number = self._first_free_number() if self._rotating else 0
        self._open_next()

    @property
    def current(self) -> Path:
        """The file being written."""
        return self.files[-1]

    def _first_free_number(self) -> int:
        """One above the highest ``<stem>.NNNN<suffix>`` (or its sidecar) in the folder."""
        pattern = re.compile(
            re.escape(self._stem) + r"\.(\d{4,})" + re.escape(self._suffix) + r"(?:\.meta\.json)?"
        )
        try:
            names = os.listdir(self._dir)
        except OSError:
            return 1  # opening the first file reports what is wrong with the folder
        taken = [int(m.group(1)) for name in names if (m := pattern.fullmatch(name))]
        return max(taken, default=0) + 1

    def _open_next(self) -> None:
        target, raw = self._create_next()
        metadata = self.metadata.stamped(self._wall_clock()) if self.metadata else None
        try:
            if self._suffix == ".log.gz":
                self._gz = _GzipMember(_WriteFully(raw), gzip_header(metadata))
            elif metadata is not None:
                write_sidecar(target, metadata, fsync=self._fsync)
        except BaseException as err:
            raw.close()
            target.unlink(missing_ok=True)  # nothing recorded into it yet
            if isinstance(err, FileExistsError):
                raise RecordingError(
                    f"{sidecar_path(target)}: metadata file already exists (left from an "
                    "earlier recording?); move it away or choose another --output name"
                ) from None
            if isinstance(err, OSError):
                raise self._error(target, err, opening=True) from err
            raise
        self._raw = raw
        self._number += 1
        self.files.append(target)
        self._opened_at = self._flushed_at = self._clock()
        self._dirty = False
        self._safe_size = raw.tell()  # .log.gz: its header stays, whatever comes after

    def _create_next(self) -> tuple[Path, BinaryIO]:
        """Create the next file (``x``: never over an existing one), passing over taken numbers."""
        for _ in range(_MAX_TAKEN_NUMBERS):
            target = (
                self._dir / f"{self._stem}.{self._number:04d}{self._suffix}"
                if self._rotating
                else self._path
            )
            if self._rotating and self._sidecar_taken(target):
                self._number += 1
                continue
            try:
                # Unbuffered: kept open across writes, closed in close(); see Errors above.
                return target, open(target, "xb", buffering=0)
            except FileExistsError:
                if not self._rotating:
                    raise RecordingError(
                        f"{target}: file already exists; choose another --output name or move "
                        "the old recording away (candiag never overwrites a capture)"
                    ) from None
                self._number += 1
            except OSError as err:
                raise self._error(target, err, opening=True) from err
        raise RecordingError(
            f"{self._dir}: {_MAX_TAKEN_NUMBERS} numbers after {self._stem}.{self._number:04d}"
            f"{self._suffix} are all taken; choose another --output name"
        )

    def _sidecar_taken(self, target: Path) -> bool:
        return (
            self.metadata is not None and self._suffix == ".log" and sidecar_path(target).exists()
        )

    def _error(self, target: Path, err: OSError, *, opening: bool = False) -> RecordingError:
        """The error in words, with the fix that fits its cause (not always disk space)."""
        reason = err.strerror or str(err)
        kept = "" if opening else " Everything up to the last flush is in the file."
        if err.errno == errno.ENOENT and not target.parent.is_dir():
            fix = f"the folder {target.parent} does not exist; create it or choose another --output"
        elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR):
            fix = "choose a writable --output path"
        elif err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            fix = "free disk space or choose a writable --output directory"
        else:
            fix = "check the disk, or choose another --output directory"
        return RecordingError(f"{target}: cannot write the recording ({reason}); {fix}.{kept}")

    def write(self, batch: FrameBatch) -> None:
        """Append ``batch``; flush and rotate when due."""
        if len(batch) and self._raw is None:
            if not self._rotated:
                raise RecordingError(f"{self.current}: the writer is closed; this is a candiag bug")
            self._rotated = False
            self._open_next()
        if len(batch) and self._raw is not None:
            data = format_candump(batch)
            try:
                if self._gz is not None:
                    self._gz.write(data)
                else:
                    self._write_lines(self._raw, data)
            except OSError as err:
                self._abandon()
                raise self._error(self.current, err) from err
            self.frames_written += len(batch)
            self._dirty = True
        self.flush_if_due()

    def flush_if_due(self) -> None:
        """Flush if the last flush is ``flush_interval`` old; rotate when a limit is reached."""
        if self._raw is None:
            return
        now = self._clock()
        if self._dirty and now - self._flushed_at >= self._flush_interval:
            self.flush()
        if self._rotation_due(now):
            self._close_current()
            self._rotated = True

    def _rotation_due(self, now: float) -> bool:
        if self._rotate_seconds is not None and now - self._opened_at >= self._rotate_seconds:
            return True
        if self._rotate_bytes is None or self._raw is None:
            return False
        return self._raw.tell() >= self._rotate_bytes

    def flush(self) -> None:
        """Push everything written so far to disk (gzip: a sync-flush point)."""
        if self._raw is None:
            return
        try:
            if self._gz is not None:
                self._gz.sync_flush()
            self._raw.flush()
            if self._fsync:
                os.fsync(self._raw.fileno())
        except OSError as err:
            self._abandon()
            raise self._error(self.current, err) from err
        if self._gz is not None:
            self._safe_size = self._raw.tell()
        self._flushed_at = self._clock()
        self._dirty = False

    def _close_current(self) -> None:
        raw, gz = self._raw, self._gz
        self._raw = self._gz = None
        if raw is None:
            return
        try:
            if gz is not None:
                gz.close()
            raw.flush()
            if self._fsync:
                os.fsync(raw.fileno())
        except OSError as err:
            self._raw, self._gz = raw, gz
            self._abandon()
            raise self._error(self.files[-1], err) from err
        raw.close()

    def _write_lines(self, raw: BinaryIO, data: bytes) -> None:
        """Write all of ``data`` (an unbuffered file may take part of it per call)."""
        view = memoryview(data)
        done = 0
        try:
            while done < len(data):
                done += raw.write(view[done:])
        finally:
            # Whole lines that reached the file stay in it, even when the rest failed.
            self._safe_size += data.rfind(b"\n", 0, done) + 1

    def _abandon(self) -> None:
        """After a write error: cut the file back to its last whole line and close it."""
        raw = self._raw
        self._raw = self._gz = None  # the member is dropped: no trailer after the cut
        if raw is None:
            return
        try:
            os.ftruncate(raw.fileno(), self._safe_size)
        except OSError:
            pass  # the original error is the one to report; a reader flags a torn last line
        finally:
            raw.close()

    def close(self) -> None:
        """Flush and close the current file (idempotent)."""
        self._rotated = False
        self._close_current()

    def discard(self) -> None:
        """Close and delete what was opened, metadata sidecars too: for a recording that
        never started (its bus could not be opened).  Refused once frames were written."""
        if self.frames_written:
            raise RecordingError(f"{self.current}: holds recorded frames; not deleting it")
        self.close()
        for path in self.files:
            path.unlink(missing_ok=True)
            if self.metadata is not None and self._suffix == ".log":
                sidecar_path(path).unlink(missing_ok=True)

    def __enter__(self) -> CandumpWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
