"""Tier 2, the shape-grouped tier: lines grouped by the positions of their separators,
each group decoded column-wise as a 2-D byte matrix.

Runs on the lines the fixed-layout tier (:mod:`.fixed_layout`) did not take: other
timestamp widths or channel names in the same chunk, more layouts or names than that tier
tells apart, and every odd or malformed line.  It is the reader's original vectorized
algorithm and the reference the fixed-layout tier is tested against
(``tests/test_candump_tiers.py``).  Per line it finds ``.``, ``)``, the two spaces and
``#`` (in one pass when every line has exactly those, the usual capture), then decodes
each *shape* (the tuple of those positions and the line length) as one matrix of
identically placed bytes: digits, hex identifier, hex data and channel name columns are
checked and converted for the whole group at once.

It takes classic data and error frames only; what it cannot take (remote and FD frames,
``.`` separators in the data, a ``_`` DLC suffix, malformed lines) is left to the
per-line tier (:mod:`.per_line`), which also says why a line is malformed.
"""

from __future__ import annotations

import sys

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from candiag.capture.formats.candump.chunk import (
    CLOSE,
    DOT,
    HASH,
    I64,
    OPEN,
    SPACE,
    U8,
    ChunkArrays,
)
from candiag.capture.formats.candump.swar import swar_decimal, swar_hex
from candiag.ingest.frames import (
    CAN_EFF_FLAG,
    CAN_EFF_MASK,
    CAN_ERR_FLAG,
    CAN_RTR_FLAG,
    CAN_SFF_MASK,
    CLASSIC_WIDTH,
    FLAG_ERROR,
    FLAG_EXTENDED,
    ChannelTable,
)

_MAX_SHAPED_LENGTH = 4095  # longer lines cannot be classic frames; the per-line tier reports them
_CAN_RTR_EFF_FLAGS = CAN_EFF_FLAG | CAN_RTR_FLAG
_SEPARATORS = np.frombuffer(b".)  #", np.uint8)  # in line order
_LINE_SHAPE = np.frombuffer(b"(.)  #\n", np.uint8)  # every byte below '0' in a plain line
_ZERO = ord("0")
_LITTLE_ENDIAN = sys.byteorder == "little"


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
    special = (buf == DOT) | (buf == CLOSE) | (buf == SPACE) | (buf == HASH)
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


def _locate_by_search(
    buf: U8, starts: I64, cend: I64
) -> tuple[I64, I64, I64, I64, I64, npt.NDArray[np.bool_]]:
    """Field separators of each line by search, with a mask of lines having the right counts."""
    cpos, clo, ccount = _occurrences(buf, CLOSE, starts, cend)
    hpos, hlo, hcount = _occurrences(buf, HASH, starts, cend)
    spos, slo, scount = _occurrences(buf, SPACE, starts, cend)
    dpos, dlo, dcount = _occurrences(buf, DOT, starts, cend)
    rp = _first(cpos, clo, ccount, starts)
    h = _first(hpos, hlo, hcount, starts)
    sp1 = _first(spos, slo, scount, starts)
    sp2 = _first(spos, slo, scount, starts, 1)
    dot = _first(dpos, dlo, dcount, starts)
    counts_ok = (ccount == 1) & (hcount == 1) & (scount == 2) & (dcount >= 1)
    return rp, h, sp1, sp2, dot, counts_ok


def decode_shape_groups(
    buf: U8, starts: I64, ends: I64, out: ChunkArrays, channels: ChannelTable
) -> npt.NDArray[np.bool_]:
    """Decode all classic-shaped lines column-wise; return which lines were decoded into ``out``."""
    n = len(starts)
    done = np.zeros(n, np.bool_)
    if n == 0:
        return done
    # can-utils -x logs end lines with " R"/" T" (direction); data never contains spaces.
    last = buf[np.maximum(ends - 1, 0)]
    has_dir = ((ends - starts) >= 2) & (buf[np.maximum(ends - 2, 0)] == SPACE)
    has_dir &= (last == ord("R")) | (last == ord("T"))
    cend = ends - 2 * has_dir
    length = cend - starts

    located = _locate_uniform(buf, starts, cend)
    if located is not None:
        rp, h, sp1, sp2, dot = located
        counts_ok = np.ones(n, np.bool_)
    else:
        rp, h, sp1, sp2, dot, counts_ok = _locate_by_search(buf, starts, cend)
    idw = h - sp2 - 1
    ndata = length - h - 1
    nint = dot - 1
    nfrac = rp - dot - 1
    cand = (
        (length > 0)
        & (length <= _MAX_SHAPED_LENGTH)
        & (buf[np.minimum(starts, len(buf) - 1)] == OPEN)
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
    out: ChunkArrays,
    channels: ChannelTable,
) -> npt.NDArray[np.bool_]:
    """Decode identically shaped lines; return which rows were valid (the others go to the per-line tier).

    Validity is checked on whole matrices first (one flat reduction each) and
    row by row only when something is wrong, which is rare.
    """
    dot, rp, sp2, h, length = shape
    int_digits, bad = _decimal_digits(m[:, 1:dot])
    frac_digits, bad_frac = _decimal_digits(m[:, dot + 1 : rp])
    id_hex, bad_id = _hex_digits(m[:, sp2 + 1 : h])
    data_hex, bad_data = _hex_digits(m[:, h + 1 : length])
    name_bytes = m[:, rp + 2 : sp2]
    bad_name = (name_bytes <= SPACE) | (name_bytes >= 127)  # printable ASCII only
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
    x = swar_decimal(_right_aligned(digits, 8 * words).view(np.uint64))
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
    x = swar_hex(_right_aligned(hex_digits, 8).view(np.uint64)[:, 0])
    return x.astype(np.uint32)


def _channel_indices(name_bytes: U8, channels: ChannelTable) -> npt.NDArray[np.int16]:
    """Channel table indices of fixed-width channel names (usually all the same)."""
    first = name_bytes[0]
    if len(name_bytes) == 1 or (name_bytes == first).all():
        return np.full(len(name_bytes), channels.lookup(first.tobytes().decode()), np.int16)
    names = np.ascontiguousarray(name_bytes).view(f"S{name_bytes.shape[1]}").reshape(-1)
    uniq, which = np.unique(names, return_inverse=True)
    lut = np.array([channels.lookup(u.decode()) for u in uniq.tolist()], np.int16)
    return lut[which.reshape(-1)]
