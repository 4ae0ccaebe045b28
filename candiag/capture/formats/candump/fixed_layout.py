"""Tier 1, the fixed-layout tier: lines laid out like a sample line, decoded as 8-byte words.

Runs first, on every line of a chunk.  A capture almost always repeats one layout: the
same timestamp widths and channel name, then a 3- or 8-digit identifier and 0..8 data
bytes.  Given that layout (taken from one of the first lines), every field sits at a known
offset from the line start (the identifier width follows from where the ``#`` is), so each
field is gathered as one unaligned little-endian ``uint64`` per line and validated and
converted with SWAR arithmetic (:mod:`.swar`, eight characters per operation) on
contiguous arrays in line order: no search for separators, no grouping, no scatter
(about 9M lines per CPU-second; ``python -m bench --only decode``).

It exists for speed alone and takes only what it decodes exactly as the shape-grouped
tier would: classic data and error frames of up to :data:`_MAX_LAYOUTS` layouts and
:data:`_MAX_NAMES` channel names per block.  Everything else (remote and FD frames,
``.`` separators, a ``_`` DLC suffix, a direction suffix, malformed lines) is left for
:mod:`.shape_groups` and :mod:`.per_line`; ``tests/test_candump_tiers.py`` holds the
tiers to identical results on random mixes of lines.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from candiag.capture.formats.candump.chunk import (
    CLOSE,
    DOT,
    HASH,
    I64,
    OPEN,
    SPACE,
    U8,
    ChunkArrays,
    Rows,
)
from candiag.capture.formats.candump.swar import M8, M16, M32, swar_decimal, swar_hex
from candiag.ingest.frames import (
    CAN_EFF_MASK,
    CAN_SFF_MASK,
    CLASSIC_WIDTH,
    FLAG_ERROR,
    FLAG_EXTENDED,
    ChannelTable,
)

_LAYOUT_RE = re.compile(rb"\((\d+)\.(\d+)\) ([\x21\x22\x24-\x27\x2a-\x7e]{1,16}) ")
_NAME_RE = re.compile(rb"[\x21\x22\x24-\x27\x2a-\x7e]+")
_MAX_LAYOUTS = 4  # layouts tried per chunk before the rest goes to the next tiers
_MAX_NAMES = 16  # channel names of one layout told apart per block of lines
_BLOCK_LINES = 32_768  # lines decoded at a time: the temporaries stay in the CPU cache
_PAD_WHOLE_BYTES = 1 << 21  # chunks up to this size are copied with padding, not split
_HASH_U8 = np.uint8(HASH)

_ONES = np.uint64(0x0101010101010101)
_HIGH = np.uint64(0x8080808080808080)
_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
_ASCII_ZEROS = np.uint64(0x3030303030303030)
_NIBBLES = np.uint64(0x0F0F0F0F0F0F0F0F)
_LOW5_BYTES = np.uint64(0x000000FFFFFFFFFF)
_ALL_BYTES = np.uint64(0xFFFFFFFFFFFFFFFF)


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
        literals = {0: OPEN, self.dot: DOT, self.rp: CLOSE, self.rp + 1: SPACE}
        literals[self.sp2] = SPACE
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
    match = _LAYOUT_RE.match(line)
    if match is None:
        return None
    nint, nfrac = len(match.group(1)), len(match.group(2))
    if nint + nfrac > 18:
        return None
    return _Layout(nint, nfrac, len(match.group(3)))


@dataclass
class _Decoded:
    """Fixed-layout results for some lines (values of lines not ``ok`` are meaningless)."""

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


def decode_fixed_layout(
    buf: U8, starts: I64, ends: I64, out: ChunkArrays, channels: ChannelTable
) -> npt.NDArray[np.bool_]:
    """Decode the lines that follow one of a few layouts taken from the lines themselves.

    Returns which lines were decoded into ``out``; the others are left untouched.
    """
    buf = np.ascontiguousarray(buf)  # word views need plain bytes (a no-op for chunks)
    n = len(starts)
    done = np.zeros(n, np.bool_)
    rows: Rows | None = None  # None: all lines
    tried: set[_Layout] = set()
    for _ in range(_MAX_LAYOUTS):
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
    buf: U8, starts: I64, ends: I64, rows: Rows | None, tried: set[_Layout]
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
    rows: Rows | None,
    out: ChunkArrays,
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


def _store(out: ChunkArrays, rows: Rows | None, d: _Decoded) -> None:
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
            value = swar_decimal(x)
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
    can_id = swar_hex(_hex_nibbles(w) & id_mask)

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
    pending: Rows | None = None  # None: all lines
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
        table[i] = channels.lookup(str(names[i]))
    return table[local]


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
    t = ((v << np.uint64(4)) | (v >> np.uint64(8))) & M8
    t = (t | (t >> np.uint64(8))) & M16
    return (t | (t >> np.uint64(16))) & M32
