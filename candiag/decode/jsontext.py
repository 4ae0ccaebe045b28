"""Numbers as JSON text, a column at a time: the digit tables and the fixed-width slots
:mod:`candiag.decode.jsonl` assembles its lines from.

Each value column becomes a byte matrix (one row per frame, padded with NUL where a text is
shorter than its slot), built with table lookups and array arithmetic instead of one
``repr`` per value; what these texts are and why (shortest float64/float32 round-trips,
integers exact up to 2**53) is in :mod:`candiag.decode.jsonl`'s docstring.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Column = npt.NDArray[Any]

#: Most decimals a decimal scale or offset may carry to be rounded (beyond: full precision).

MAX_DECIMALS = 15
#: ``(|value| + |offset|) * 10**decimals`` at most this for the rounding to be exact.
EXACT_LIMIT = float(2**49)

PAD = 0  # NUL: padding inside slots, deleted before writing
_MINUS = ord("-")
_NULL = b"null"
_BIG = 10_000  # values below this take one lookup in the 4-digit tables
_FLOAT53 = float(2**53)


# -- digit tables -------------------------------------------------------------------------
def _decimal_rows(count: int, width: int) -> U8:
    """ASCII digits of 0..count-1, zero-padded to ``width``, one row each."""
    powers = 10 ** np.arange(width - 1, -1, -1)
    digits: U8 = ((np.arange(count)[:, None] // powers) % 10 + ord("0")).astype(np.uint8)
    return digits


def _digit_tables() -> U8:
    """Rows of 4 ASCII digits for 0..9999, three ways (offsets below).

    ``[0, 10000)``: leading zeros as NUL and 0 as four NULs (a group above the value's
    first digit); ``[10000, 20000)``: leading zeros as NUL but 0 as ``"0"`` (a value's last
    group when nothing is above it); ``[20000, 30000)``: zero-padded.
    """
    padded = _decimal_rows(_BIG, 4)
    lead = padded.copy()
    for col in range(3):  # a '0' with only '0's before it
        lead[np.all(padded[:, : col + 1] == ord("0"), axis=1), col] = PAD
    blank = lead.copy()
    blank[0] = PAD
    return np.concatenate([blank, lead, padded])


# Looked up as uint32 (one 4-byte row per value): ten times faster than 4-byte rows.
_DIGITS = _digit_tables().view(np.uint32).reshape(-1)
_BLANK, _LEAD, _PADDED = 0, _BIG, 2 * _BIG


def _fraction_table(decimals: int) -> npt.NDArray[np.uint32]:
    """``decimals`` zero-padded digits of 0..10**decimals-1 with trailing zeros (but the
    first digit) as NUL, in the first bytes of a uint32 per value."""
    rows = np.zeros((10**decimals, 4), np.uint8)
    rows[:, :decimals] = _decimal_rows(10**decimals, decimals)
    for col in range(decimals - 1, 0, -1):
        rows[np.all(rows[:, col:decimals] == ord("0"), axis=1), col] = PAD
    return rows.view(np.uint32).reshape(-1)


_FRACTIONS = {d: _fraction_table(d) for d in range(1, 5)}
# 4 upper-case hex digits of 0..0xFFFF, one uint32 each.
HEX4 = np.frombuffer(b"0123456789ABCDEF", np.uint8)[
    (np.arange(1 << 16)[:, None] >> np.array([12, 8, 4, 0])) & 15
].view(np.uint32)
HEX4 = HEX4.reshape(-1)
# Row d: 0xFF in its first d bytes (the digits a fraction of d decimals keeps), then 0.
_KEEP = np.where(np.arange(16) < np.arange(17)[:, None], 0xFF, 0).astype(np.uint8)
_POW10 = np.array([10**i for i in range(19)], np.int64)
_POW10F = np.array([10.0**i for i in range(19)])


# -- text columns -------------------------------------------------------------------------
def digit_text(magnitude: Column, width: int) -> U8:
    """Decimal digits of non-negative integers, right-aligned in ``width``, leading NULs.

    ``magnitude`` is int64 or uint64 of any shape; the result has one more axis.
    """
    groups = -(-width // 4)
    if groups == 1:
        return char_bytes(_DIGITS[magnitude + _LEAD])[..., 4 - width :]
    words = np.empty((*magnitude.shape, groups), np.uint32)
    parts: list[Column] = []
    rest = magnitude
    for _ in range(groups - 1):
        parts.append(rest % _BIG)
        rest = rest // _BIG
    parts.append(rest)
    higher = np.zeros(magnitude.shape, np.bool_)  # a non-zero group above this one
    for g in range(groups - 1, -1, -1):
        part = parts[g].astype(np.intp)
        base = np.where(higher, _PADDED, _BLANK if g else _LEAD)
        if g:
            higher |= part > 0
        words[..., groups - 1 - g] = _DIGITS[base + part]
    return char_bytes(words).reshape(*magnitude.shape, 4 * groups)[..., 4 * groups - width :]


def _padded(values: Column, width: int) -> U8:
    """Non-negative integers as exactly ``width`` zero-padded digits."""
    groups = -(-width // 4)
    words = np.empty((*values.shape, groups), np.uint32)
    rest = values
    for g in range(groups - 1, -1, -1):
        words[..., g] = _DIGITS[rest % _BIG + _PADDED]
        if g:
            rest = rest // _BIG
    return char_bytes(words).reshape(*values.shape, 4 * groups)[..., 4 * groups - width :]


def char_bytes(words: npt.NDArray[np.uint32]) -> U8:
    """uint32 table entries as their 4 bytes (one more axis)."""
    return words.view(np.uint8).reshape(*words.shape, 4)


def _fraction(values: Column, decimals: int) -> U8:
    """``decimals`` digits, zero-padded on the left, trailing zeros (but the first) as NUL."""
    table = _FRACTIONS.get(decimals)
    if table is not None:
        return char_bytes(table[values])[..., :decimals]
    text = _padded(values, decimals)
    zero = text[..., 1:] == ord("0")
    trailing = np.flip(np.logical_and.accumulate(np.flip(zero, -1), axis=-1), -1)
    text[..., 1:][trailing] = PAD
    return text


def text_matrix(texts: Sequence[bytes]) -> U8:
    """Texts as rows of a NUL-padded ``uint8`` matrix."""
    if not texts:
        return np.zeros((0, 1), np.uint8)
    fixed = np.array(texts, dtype=np.bytes_)
    width = max(fixed.dtype.itemsize, 1)
    return fixed.view(np.uint8).reshape(len(texts), width)


def _float_text(value: float) -> bytes:
    return repr(value).encode() if math.isfinite(value) else _NULL


def _signs(negative: BoolArray) -> U8 | None:
    """The sign byte column (``-`` or NUL), None when no value is negative."""
    if not negative.any():
        return None
    return np.where(negative, np.uint8(_MINUS), np.uint8(PAD))


# -- slots --------------------------------------------------------------------------------
class Slot:
    """One value field of the lines: its parts side by side, some rows replaced.

    ``parts`` are constant bytes or ``(rows, width)`` text matrices; ``sign`` an optional
    leading sign byte per row; rows in ``replace`` are written from ``replacement``
    instead (full-precision fallbacks, value-table names).
    """

    def __init__(
        self,
        parts: Sequence[bytes | U8],
        sign: U8 | None = None,
        replace: BoolArray | None = None,
        replacement: U8 | None = None,
    ) -> None:
        self.parts = parts
        self.sign = sign
        widths = [len(p) if isinstance(p, bytes) else p.shape[1] for p in parts]
        self.number_width = (sign is not None) + sum(widths)
        self.replace = replace
        self.replacement = replacement
        extra = replacement.shape[1] if replacement is not None else 0
        self.width = max(self.number_width, extra)

    def with_replacement(self, rows: BoolArray, texts: U8) -> Slot:
        """This slot with ``rows`` written as ``texts`` (rows already replaced stay so)."""
        if self.replace is not None and self.replacement is not None:
            width = max(self.replacement.shape[1], texts.shape[1])
            merged = np.zeros((rows.shape[0], width), np.uint8)
            merged[self.replace, : self.replacement.shape[1]] = self.replacement
            merged[rows] = PAD
            merged[rows, : texts.shape[1]] = texts
            union = self.replace | rows
            return Slot(self.parts, self.sign, union, merged[union])
        return Slot(self.parts, self.sign, rows, texts)

    def render(self, view: U8, start: int = 0) -> None:
        """Write rows ``start .. start + len(view)`` of this slot into ``view``."""
        rows = slice(start, start + view.shape[0])
        column = 0
        if self.sign is not None:
            view[:, 0] = self.sign[rows]
            column = 1
        for part in self.parts:
            if isinstance(part, bytes):
                view[:, column : column + len(part)] = np.frombuffer(part, np.uint8)
                column += len(part)
            else:
                _put(view[:, column : column + part.shape[1]], part[rows])
                column += part.shape[1]
        if column < view.shape[1]:
            view[:, column:] = PAD
        if self.replace is not None and self.replacement is not None:
            where = np.flatnonzero(self.replace[rows])
            if where.size:
                first = int(np.count_nonzero(self.replace[:start]))
                texts = np.zeros((where.size, view.shape[1]), np.uint8)
                chosen = self.replacement[first : first + where.size]
                texts[:, : chosen.shape[1]] = chosen
                view[where] = texts


def _put(target: U8, text: U8) -> None:
    """``target[:] = text`` for (rows, width) byte matrices, copied a row at a time.

    Through a ``V{width}`` view each row is one item: numpy's per-byte copy of a narrow
    strided block costs about 10x more.
    """
    width = text.shape[1]
    if width > 1 and text.strides[1] == 1 and target.strides[1] == 1:
        target.view(f"V{width}")[...] = text.view(f"V{width}")
    else:
        target[...] = text


def take_rows(matrix: U8, index: npt.NDArray[np.intp]) -> U8:
    """``matrix[index]`` for a C-contiguous byte matrix, one row per item (see :func:`_put`)."""
    width = matrix.shape[1]
    if width < 2 or matrix.strides != (width, 1):
        taken: U8 = matrix[index]
        return taken
    return matrix.view(f"V{width}")[index].view(np.uint8).reshape(-1, width)


def _replaced(slot: Slot, rows: BoolArray, values: F64) -> Slot:
    """``slot`` with ``rows`` in full precision (``repr``, ``null`` when not finite)."""
    if not rows.any():
        return slot
    texts = text_matrix([_float_text(v) for v in values[rows].tolist()])
    return slot.with_replacement(rows, texts)


def integer_slots(columns: Sequence[Column]) -> list[Slot]:
    """Exact integer columns; small ones (the usual case) share one table lookup."""
    slots: list[Slot | None] = [None] * len(columns)
    stackable = [
        i
        for i, c in enumerate(columns)
        if c.dtype.kind in "ib" or (c.dtype.kind == "u" and c.dtype.itemsize < 8)
    ]
    if stackable:
        stacked = np.stack([columns[i] for i in stackable]).astype(np.int64, copy=False)
        lows = stacked.min(axis=1).tolist()
        highs = stacked.max(axis=1).tolist()
        small = [
            j
            for j, (lo, hi) in enumerate(zip(lows, highs, strict=True))
            if -_BIG < lo and hi < _BIG
        ]
        if small:
            part = stacked if len(small) == len(stackable) else stacked[small]
            negative_any = any(lows[j] < 0 for j in small)
            magnitude = np.abs(part) if negative_any else part
            texts = char_bytes(_DIGITS[magnitude + _LEAD])
            for row, j in enumerate(small):
                width = len(str(max(-lows[j], highs[j])))
                sign = _signs(part[row] < 0) if lows[j] < 0 else None
                slots[stackable[j]] = Slot([texts[row, :, 4 - width :]], sign)
    for i, column in enumerate(columns):
        if slots[i] is None:
            slots[i] = _integer_slot(column)
    return [s for s in slots if s is not None]


def _integer_slot(values: Column) -> Slot:
    """One integer column of any size (int64, uint64, Python ints beyond 64 bits)."""
    if values.dtype.kind == "O":
        return Slot([text_matrix([str(int(v)).encode() for v in values.tolist()])])
    sign = None
    if values.dtype.kind == "u":
        magnitude = values.astype(np.uint64, copy=False)
    else:
        signed = values.astype(np.int64, copy=False)
        # abs() of the most negative int64 wraps to itself; as uint64 it is 2**63.
        magnitude = np.abs(signed).view(np.uint64)
        sign = _signs(signed < 0)
    top = int(magnitude.max()) if magnitude.size else 0
    if top < 2**63:
        magnitude = magnitude.view(np.int64)
    return Slot([digit_text(magnitude, len(str(top)))], sign)


def decimal_slots(columns: Sequence[F64], decimals: int, offsets: Sequence[float]) -> list[Slot]:
    """Columns rounded to ``decimals`` (the module docstring's rule), stacked."""
    values = np.stack(columns)
    magnitude = np.abs(values)
    power = 10.0**decimals
    with np.errstate(invalid="ignore", over="ignore"):
        bound = (magnitude + np.abs(np.array(offsets))[:, None]) * power
        exact = bound <= EXACT_LIMIT  # False for NaN and inf
        scaled = np.rint(np.where(exact, magnitude, 0.0) * power).astype(np.int64)
    whole, fraction = np.divmod(scaled, 10**decimals)
    tops = whole.max(axis=1).tolist()
    top = max(tops)
    whole_text = digit_text(whole, len(str(top)))
    fraction_text = _fraction(fraction, decimals)
    negative = np.signbit(values) & exact
    all_exact = exact.all(axis=1).tolist()
    slots: list[Slot] = []
    for row, column_top in enumerate(tops):
        width = len(str(column_top))
        slot = Slot(
            [whole_text[row, :, whole_text.shape[2] - width :], b".", fraction_text[row]],
            _signs(negative[row]),
        )
        if not all_exact[row]:
            slot = _replaced(slot, ~exact[row], values[row])
        slots.append(slot)
    return slots


def float_slot(values: F64) -> Slot:
    """Full precision: Python's ``repr`` (``null`` when not finite)."""
    return Slot([text_matrix([_float_text(v) for v in values.tolist()])])


def _single_text(value: float) -> bytes:
    """The shortest text that reads back as the same float32 (numpy's), ``null`` if none."""
    return str(np.float32(value)).encode() if math.isfinite(value) else _NULL


def single_slot(values: F64) -> Slot:
    """Values of an unscaled float32 signal: the shortest text that reads back as the same
    float32 (at most 9 significant digits), ``null`` when not finite."""
    single = np.abs(values).astype(np.float32)
    found, digits, decimals = _single_digits(single)
    if not found.any():
        return Slot([text_matrix([_single_text(v) for v in values.tolist()])])
    places = max(int(decimals.max()), 1)
    shift = np.maximum(decimals, 0)
    # The text's integral part is the value's: no integer lies between a float32 below
    # 2**24 and its shortest text; at or above 2**24 no decimals are written.
    whole = np.floor(np.where(found, np.abs(values), 0.0)).astype(np.int64)
    if int(decimals.min()) < 0:
        whole = np.where(decimals < 0, digits * _POW10[-np.minimum(decimals, 0)], whole)
    fraction = np.where(decimals > 0, (digits - whole * _POW10[shift]) * _POW10[places - shift], 0)
    fraction_text = _padded(fraction, places)
    if places > 1:  # digits past each value's own decimals are zeros: dropped (one stays)
        keep = _KEEP.view("V16")[np.maximum(decimals, 1)].view(np.uint8).reshape(-1, 16)
        fraction_text &= keep[:, :places]
    slot = Slot(
        [digit_text(whole, len(str(int(whole.max())))), b".", fraction_text],
        _signs(np.signbit(values) & found),
    )
    others = ~found
    if not others.any():
        return slot
    texts = text_matrix([_single_text(v) for v in values[others].tolist()])
    return slot.with_replacement(others, texts)


def _single_digits(single: npt.NDArray[np.float32]) -> tuple[BoolArray, I64, I64]:
    """For float32 magnitudes, the shortest ``k * 10**-d`` that reads back as the same float32.

    Returns where one was found (finite, between 1e-7 and 1e18: its text fits the columns),
    ``k`` (at most 9 digits) and ``d``.  A JSON reader turns the text into the float64
    nearest to it; ``k / 10**d`` (``k * 10**-d``) computes exactly that float, since
    both numbers are exact and one division (product) is correctly rounded.  That float
    narrowed to float32 must be the value.  9 significant digits always suffice, and a
    text that reads back with p digits does with p + 1: from 7 digits (most float32
    values need 7 to 9), more are tried where 7 do not read back, fewer where they do.
    """
    value = single.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        exponent = np.floor(np.log10(value))
    exponent = np.where(np.isfinite(exponent), exponent, 0).astype(np.int64)
    usable = np.isfinite(value) & (exponent >= -7) & (exponent <= 17)
    value = np.where(usable, value, 0.0)  # others never read back: they keep numpy's text
    decimals = np.where(usable, 6 - exponent, 0)
    found, digits = _single_check(value, single, decimals)
    found &= usable
    for more in (7, 8):  # 8 and 9 significant digits where fewer do not read back
        rows = np.flatnonzero(usable & ~found)
        if not rows.size:
            break
        ok, candidate = _single_check(value[rows], single[rows], more - exponent[rows])
        rows, candidate = rows[ok], candidate[ok]
        found[rows] = True
        digits[rows] = candidate
        decimals[rows] = more - exponent[rows]
    rows = np.flatnonzero(found & (digits != 0))
    while rows.size:  # fewer digits while they still read back
        fewer = decimals[rows] - 1
        ok, candidate = _single_check(value[rows], single[rows], fewer)
        rows, candidate, fewer = rows[ok], candidate[ok], fewer[ok]
        digits[rows] = candidate
        decimals[rows] = fewer
        rows = rows[decimals[rows] > -exponent[rows]]  # one significant digit is the least
    zero = found & (digits == 0)
    decimals[zero] = 0
    return found, np.where(found, digits, 0), np.where(found, decimals, 0)


def _single_check(
    value: F64, single: npt.NDArray[np.float32], decimals: I64
) -> tuple[BoolArray, I64]:
    """``k = round(value * 10**decimals)`` and whether ``k * 10**-decimals`` reads back."""
    with np.errstate(over="ignore", invalid="ignore"):
        if decimals.size and int(decimals.min()) >= 0:
            power = _POW10F[decimals]
            scaled = np.rint(value * power)
            back = scaled / power
        else:
            up = decimals >= 0
            power = _POW10F[np.abs(decimals)]
            scaled = np.rint(np.where(up, value * power, value / power))
            back = np.where(up, scaled / power, scaled * power)
        ok = back.astype(np.float32) == single
    return ok, np.where(ok, scaled, 0.0).astype(np.int64)


class ChoiceTable:
    """A signal's value table: sorted raw values and their JSON-encoded names."""

    def __init__(self, choices: Mapping[int, str]) -> None:
        items = sorted(choices.items())
        self.keys = [k for k, _ in items]
        self.names = text_matrix([json_bytes(name) for _, name in items])
        inside = [i for i, k in enumerate(self.keys) if -(2**63) <= k < 2**63]
        self.signed = np.array([self.keys[i] for i in inside], np.int64)
        self.signed_index = np.array(inside, np.intp)

    def lookup(self, raw: Column) -> tuple[BoolArray, npt.NDArray[np.intp]]:
        """Where ``int(raw)`` has a name (cantools' lookup), and which name."""
        kind = raw.dtype.kind
        if kind == "f":
            usable = np.isfinite(raw) & (np.abs(raw) < 2.0**63)
            keys: Column = np.trunc(np.where(usable, raw, 0.0)).astype(np.int64)
        elif kind in "ib" or (kind == "u" and raw.dtype.itemsize < 8):
            usable = np.ones(raw.shape, np.bool_)
            keys = raw.astype(np.int64, copy=False)
        else:  # uint64 and Python ints: one lookup per value
            index = {k: i for i, k in enumerate(self.keys)}
            which = np.array([index.get(int(v), -1) for v in raw.tolist()], np.intp)
            return which >= 0, np.maximum(which, 0)
        if not self.signed.size:
            return np.zeros(raw.shape, np.bool_), np.zeros(raw.shape, np.intp)
        pos = np.minimum(np.searchsorted(self.signed, keys), self.signed.size - 1)
        hit = usable & (self.signed[pos] == keys)
        return hit, self.signed_index[pos]

    def named(self, slot: Slot, raw: Column) -> Slot:
        hit, which = self.lookup(raw)
        if not hit.any():
            return slot
        return slot.with_replacement(hit, self.names[which[hit]])


def timestamp_slot(timestamps: F64) -> Slot:
    """6 decimals where exact; 9 if exact for the whole batch; else ``repr`` (never rounded)."""
    ts = timestamps.astype(np.float64, copy=False)
    magnitude = np.abs(ts)
    exact, whole, fraction = _exact_fixed(magnitude, 6)
    decimals = 6
    if not exact.all():
        exact9, whole9, fraction9 = _exact_fixed(magnitude, 9)
        if exact9.all():
            exact, whole, fraction, decimals = exact9, whole9, fraction9, 9
    slot = Slot(
        [digit_text(whole, len(str(int(whole.max())))), b".", _padded(fraction, decimals)],
        _signs(np.signbit(ts) & exact),
    )
    return _replaced(slot, ~exact, ts)


def _exact_fixed(magnitude: F64, decimals: int) -> tuple[BoolArray, I64, I64]:
    """Where ``magnitude`` is exactly ``k / 10**decimals`` as text; whole and fraction of k.

    ``k / 10**d`` in floating point is correctly rounded, as is reading the decimal text
    back: when the division gives the value, the text reads back as exactly the value.
    """
    power = 10.0**decimals
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = np.rint(magnitude * power)
        exact = (scaled < _FLOAT53) & (scaled / power == magnitude)
    whole, fraction = np.divmod(np.where(exact, scaled, 0.0).astype(np.int64), 10**decimals)
    return exact, whole, fraction


def json_bytes(text: str) -> bytes:
    """``text`` as a JSON string in UTF-8 (``\\u`` escapes only where UTF-8 cannot go)."""
    try:
        return json.dumps(text, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: escaped, still valid JSON
        return json.dumps(text).encode("ascii")
