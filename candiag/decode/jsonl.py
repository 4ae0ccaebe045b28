"""JSON Lines export of decoded frames (``candiag decode``), one object per frame in capture order.

Line shape (keys always in this order; ``node`` only for messages whose identifier carries a
node address, ``units`` only with ``units=True``)::

    {"timestamp": 1700000000.023173, "channel": "can0", "id": "0x0283F008", "extended": true,
     "arbitration_id": 42200072, "message": "ModuleStatus", "node": 8,
     "signals": {"OutputVoltage": 751.5, "CoolingState": "Running"},
     "units": {"OutputVoltage": "V"}}

Values, and why each is written as it is:

* ``id``: the identifier as CAN users write it, upper-case hex, 3 digits for a standard
  (11-bit) frame and 8 for an extended (29-bit) one.  The width comes from the frame's IDE
  flag, never from the value: an extended 0x285 is ``0x00000285``.  ``arbitration_id`` keeps
  the same identifier as an integer for scripts.
* ``timestamp``: seconds with 6 decimals (microseconds, as candump writes them) when that
  text reads back as exactly the same float; else 9 decimals when exact for the whole batch;
  else the shortest text that reads back exactly (``repr``).  A timestamp is never rounded.
* Signal values are cantools' ``decode_message(..., decode_choices=False)`` values, written
  so that they read back exactly, with one exception, binary noise, removed by this rule: a
  signal whose scale and offset are decimal numbers in the DBC (``0.1``, ``0.05``, ``-40``;
  ``d`` = the larger count of decimals of the two, at least 1 and at most 15) has an exact
  value ``raw * scale + offset`` with ``d`` decimals, so its value is written rounded to
  ``d`` decimals, trailing zeros dropped (``raw * 0.1`` gives ``12.3``, not
  ``12.300000000000001``).  Rounding restores the exact decimal value only while binary
  floating point is precise enough, so it is applied only when ``(|value| + |offset|) *
  10**d <= 2**49`` (the float error of ``raw * scale + offset`` is then below a 16th of the
  last decimal); other values are written in full precision.
* IEEE float64 signals, scaled float32 signals and values too large for their decimals are
  written in full precision: Python's ``repr``, the shortest text that reads back as the
  same float64.
* Unscaled IEEE float32 signals are written as the shortest text that reads back as the
  same float32 (at most 9 significant digits, as numpy prints a float32): ``751.4``, not
  ``751.4000244140625``, which is that same float32 widened to float64 (cantools' value).
  Nothing the signal carries is lost: the value read back, narrowed to float32, is
  exactly the transmitted float32.
* Integer signals (integral scale and offset) are exact integers, 64-bit ones included.
* JSON has no NaN or infinity: non-finite floats (IEEE float signals can carry them) are
  written as ``null``.  Negative zero stays ``-0.0``.
* With ``choices=True`` a value whose raw value has a name in the DBC's value table
  (``VAL_``) is written as that name, exactly as cantools' ``decode_choices=True`` names it
  (the raw value, truncated to an integer, looked up in the table); values without a name
  stay numbers.
* Text (names, units, channels, value names) is JSON-escaped and written as UTF-8.

Why not ``json.dumps`` per frame: at ~4 µs per line it cost 12-14x the decoding itself.  Here
the lines of each message in a batch are built as one ``uint8`` matrix, one row per frame: a
template row holds the constant text (keys, message name) and each value column is rendered
into its slot at once, digits from a 4-digit lookup table, with NUL bytes as padding where a
value is shorter than its slot.  Each row becomes one ``bytes`` object, the lines are put in
capture order, joined a few hundred at a time, and ``bytes.replace`` deletes the padding
(NUL never occurs in the text itself: JSON escapes it).  Float32 values, whose text numpy or
``repr`` make at ~0.5 µs each, are searched for their shortest text with array arithmetic.
:func:`reference_lines` writes the same lines the straightforward way, one ``json.dumps``
per frame; the tests and the benchmark check that both agree.
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt

from candiag.decode.dbc import ChargerDatabase, MessageDef, SignalDef
from candiag.decode.decoder import BatchDecoder, DecodedMessage, DecodeResult
from candiag.ingest.frames import FrameBatch, format_can_id

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Column = npt.NDArray[Any]

#: Most decimals a decimal scale or offset may carry to be rounded (beyond: full precision).
MAX_DECIMALS = 15
#: ``(|value| + |offset|) * 10**decimals`` at most this for the rounding to be exact.
EXACT_LIMIT = float(2**49)

_PAD = 0  # NUL: padding inside slots, deleted before writing
_MINUS = ord("-")
_NULL = b"null"
_PIECE_LINES = 1024  # lines joined and stripped of padding at a time (well inside the cache)
_BLOCK_BYTES = 1 << 21  # line matrices are built in blocks of about this size (cache)
_ARENA_BYTES = 1 << 26  # at most this much line text is rendered at a time (memory)
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
        lead[np.all(padded[:, : col + 1] == ord("0"), axis=1), col] = _PAD
    blank = lead.copy()
    blank[0] = _PAD
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
        rows[np.all(rows[:, col:decimals] == ord("0"), axis=1), col] = _PAD
    return rows.view(np.uint32).reshape(-1)


_FRACTIONS = {d: _fraction_table(d) for d in range(1, 5)}
# 4 upper-case hex digits of 0..0xFFFF, one uint32 each.
_HEX4 = np.frombuffer(b"0123456789ABCDEF", np.uint8)[
    (np.arange(1 << 16)[:, None] >> np.array([12, 8, 4, 0])) & 15
].view(np.uint32)
_HEX4 = _HEX4.reshape(-1)
# Row d: 0xFF in its first d bytes (the digits a fraction of d decimals keeps), then 0.
_KEEP = np.where(np.arange(16) < np.arange(17)[:, None], 0xFF, 0).astype(np.uint8)
_POW10 = np.array([10**i for i in range(19)], np.int64)
_POW10F = np.array([10.0**i for i in range(19)])


# -- public helpers -----------------------------------------------------------------------
@dataclass(frozen=True)
class JsonLinesOptions:
    """What each line carries beyond the default: units, value-table names."""

    units: bool = False
    choices: bool = False


def signal_decimals(sig: SignalDef) -> int | None:
    """Decimals a value of ``sig`` is rounded to, or None: written in full precision.

    The count of decimals of the scale and offset as the DBC writes them (the shortest
    text that reads back as the same float), at least 1, for signals that are neither
    integer (exact already) nor IEEE floats; None beyond :data:`MAX_DECIMALS`.
    """
    if sig.is_float or sig.is_integer:
        return None
    places = max(_decimal_places(sig.scale), _decimal_places(sig.offset), 1)
    return places if places <= MAX_DECIMALS else None


def _decimal_places(value: float) -> int:
    if not math.isfinite(value):
        return MAX_DECIMALS + 1
    exponent = Decimal(repr(value)).normalize().as_tuple().exponent
    return max(0, -int(exponent))


def choice_names(message: MessageDef) -> dict[str, dict[int, str]]:
    """The value tables of ``message``'s signals, raw value -> name as cantools gives it."""
    tables: dict[str, dict[int, str]] = {}
    cantools_message = message.cantools_message
    if cantools_message is None:
        return tables
    by_name = {s.name: s for s in cantools_message.signals}
    for sig in message.signals:
        found = by_name.get(sig.name)
        choices = found.choices if found is not None else None
        if choices:
            tables[sig.name] = {int(raw): str(name) for raw, name in choices.items()}
    return tables


def raw_database(db: ChargerDatabase) -> ChargerDatabase | None:
    """``db`` with scale 1 and offset 0 for every scaled signal that has a value table.

    Decoding a batch with it gives the raw values that value-table names are looked up
    by; None when no such signal exists (raw values are then the decoded values).
    """
    changed = False
    messages: list[MessageDef] = []
    for msg in db.messages:
        tables = choice_names(msg)
        signals = tuple(
            dataclasses.replace(s, scale=1, offset=0, is_integer=not s.is_float)
            if s.name in tables and (s.scale != 1 or s.offset != 0)
            else s
            for s in msg.signals
        )
        changed |= signals != msg.signals
        messages.append(dataclasses.replace(msg, signals=signals))
    return ChargerDatabase(messages, db.sources) if changed else None


def _json_bytes(text: str) -> bytes:
    """``text`` as a JSON string in UTF-8 (``\\u`` escapes only where UTF-8 cannot go)."""
    try:
        return json.dumps(text, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: escaped, still valid JSON
        return json.dumps(text).encode("ascii")


# -- text columns -------------------------------------------------------------------------
def _digits(magnitude: Column, width: int) -> U8:
    """Decimal digits of non-negative integers, right-aligned in ``width``, leading NULs.

    ``magnitude`` is int64 or uint64 of any shape; the result has one more axis.
    """
    groups = -(-width // 4)
    if groups == 1:
        return _chars(_DIGITS[magnitude + _LEAD])[..., 4 - width :]
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
    return _chars(words).reshape(*magnitude.shape, 4 * groups)[..., 4 * groups - width :]


def _padded(values: Column, width: int) -> U8:
    """Non-negative integers as exactly ``width`` zero-padded digits."""
    groups = -(-width // 4)
    words = np.empty((*values.shape, groups), np.uint32)
    rest = values
    for g in range(groups - 1, -1, -1):
        words[..., g] = _DIGITS[rest % _BIG + _PADDED]
        if g:
            rest = rest // _BIG
    return _chars(words).reshape(*values.shape, 4 * groups)[..., 4 * groups - width :]


def _chars(words: npt.NDArray[np.uint32]) -> U8:
    """uint32 table entries as their 4 bytes (one more axis)."""
    return words.view(np.uint8).reshape(*words.shape, 4)


def _fraction(values: Column, decimals: int) -> U8:
    """``decimals`` digits, zero-padded on the left, trailing zeros (but the first) as NUL."""
    table = _FRACTIONS.get(decimals)
    if table is not None:
        return _chars(table[values])[..., :decimals]
    text = _padded(values, decimals)
    zero = text[..., 1:] == ord("0")
    trailing = np.flip(np.logical_and.accumulate(np.flip(zero, -1), axis=-1), -1)
    text[..., 1:][trailing] = _PAD
    return text


def _text_matrix(texts: Sequence[bytes]) -> U8:
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
    return np.where(negative, np.uint8(_MINUS), np.uint8(_PAD))


# -- slots --------------------------------------------------------------------------------
class _Slot:
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

    def with_replacement(self, rows: BoolArray, texts: U8) -> _Slot:
        """This slot with ``rows`` written as ``texts`` (rows already replaced stay so)."""
        if self.replace is not None and self.replacement is not None:
            width = max(self.replacement.shape[1], texts.shape[1])
            merged = np.zeros((rows.shape[0], width), np.uint8)
            merged[self.replace, : self.replacement.shape[1]] = self.replacement
            merged[rows] = _PAD
            merged[rows, : texts.shape[1]] = texts
            union = self.replace | rows
            return _Slot(self.parts, self.sign, union, merged[union])
        return _Slot(self.parts, self.sign, rows, texts)

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
            view[:, column:] = _PAD
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


def _rows(matrix: U8, index: npt.NDArray[np.intp]) -> U8:
    """``matrix[index]`` for a C-contiguous byte matrix, one row per item (see :func:`_put`)."""
    width = matrix.shape[1]
    if width < 2 or matrix.strides != (width, 1):
        taken: U8 = matrix[index]
        return taken
    return matrix.view(f"V{width}")[index].view(np.uint8).reshape(-1, width)


def _replaced(slot: _Slot, rows: BoolArray, values: F64) -> _Slot:
    """``slot`` with ``rows`` in full precision (``repr``, ``null`` when not finite)."""
    if not rows.any():
        return slot
    texts = _text_matrix([_float_text(v) for v in values[rows].tolist()])
    return slot.with_replacement(rows, texts)


def _integer_slots(columns: Sequence[Column]) -> list[_Slot]:
    """Exact integer columns; small ones (the usual case) share one table lookup."""
    slots: list[_Slot | None] = [None] * len(columns)
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
            texts = _chars(_DIGITS[magnitude + _LEAD])
            for row, j in enumerate(small):
                width = len(str(max(-lows[j], highs[j])))
                sign = _signs(part[row] < 0) if lows[j] < 0 else None
                slots[stackable[j]] = _Slot([texts[row, :, 4 - width :]], sign)
    for i, column in enumerate(columns):
        if slots[i] is None:
            slots[i] = _integer_slot(column)
    return [s for s in slots if s is not None]


def _integer_slot(values: Column) -> _Slot:
    """One integer column of any size (int64, uint64, Python ints beyond 64 bits)."""
    if values.dtype.kind == "O":
        return _Slot([_text_matrix([str(int(v)).encode() for v in values.tolist()])])
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
    return _Slot([_digits(magnitude, len(str(top)))], sign)


def _decimal_slots(columns: Sequence[F64], decimals: int, offsets: Sequence[float]) -> list[_Slot]:
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
    whole_text = _digits(whole, len(str(top)))
    fraction_text = _fraction(fraction, decimals)
    negative = np.signbit(values) & exact
    all_exact = exact.all(axis=1).tolist()
    slots: list[_Slot] = []
    for row, column_top in enumerate(tops):
        width = len(str(column_top))
        slot = _Slot(
            [whole_text[row, :, whole_text.shape[2] - width :], b".", fraction_text[row]],
            _signs(negative[row]),
        )
        if not all_exact[row]:
            slot = _replaced(slot, ~exact[row], values[row])
        slots.append(slot)
    return slots


def _float_slot(values: F64) -> _Slot:
    """Full precision: Python's ``repr`` (``null`` when not finite)."""
    return _Slot([_text_matrix([_float_text(v) for v in values.tolist()])])


def _single_text(value: float) -> bytes:
    """The shortest text that reads back as the same float32 (numpy's), ``null`` if none."""
    return str(np.float32(value)).encode() if math.isfinite(value) else _NULL


def _single_slot(values: F64) -> _Slot:
    """Values of an unscaled float32 signal: the shortest text that reads back as the same
    float32 (at most 9 significant digits), ``null`` when not finite."""
    single = np.abs(values).astype(np.float32)
    found, digits, decimals = _single_digits(single)
    if not found.any():
        return _Slot([_text_matrix([_single_text(v) for v in values.tolist()])])
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
    slot = _Slot(
        [_digits(whole, len(str(int(whole.max())))), b".", fraction_text],
        _signs(np.signbit(values) & found),
    )
    others = ~found
    if not others.any():
        return slot
    texts = _text_matrix([_single_text(v) for v in values[others].tolist()])
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


class _ChoiceTable:
    """A signal's value table: sorted raw values and their JSON-encoded names."""

    def __init__(self, choices: Mapping[int, str]) -> None:
        items = sorted(choices.items())
        self.keys = [k for k, _ in items]
        self.names = _text_matrix([_json_bytes(name) for _, name in items])
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

    def named(self, slot: _Slot, raw: Column) -> _Slot:
        hit, which = self.lookup(raw)
        if not hit.any():
            return slot
        return slot.with_replacement(hit, self.names[which[hit]])


# -- per message layout -------------------------------------------------------------------
@dataclass
class _SignalLayout:
    signal: SignalDef
    key: bytes  # '"Name": '
    decimals: int | None
    unit: bytes  # JSON string of the unit, b"" when none
    choices: _ChoiceTable | None

    @property
    def single(self) -> bool:
        return is_single(self.signal)


def is_single(sig: SignalDef) -> bool:
    """An unscaled IEEE float32 signal: written as the shortest text of its float32."""
    return sig.is_float and sig.length == 32 and sig.scale == 1 and sig.offset == 0


class _MessageLayout:
    """What is the same in every line of one message, prepared once."""

    def __init__(self, message: MessageDef, options: JsonLinesOptions) -> None:
        tables = choice_names(message) if options.choices else {}
        self.signals = [
            _SignalLayout(
                signal=s,
                key=_json_bytes(s.name) + b": ",
                decimals=signal_decimals(s),
                unit=_json_bytes(s.unit) if s.unit else b"",
                choices=_ChoiceTable(tables[s.name]) if s.name in tables else None,
            )
            for s in message.signals
        ]
        self.multiplexed = message.is_multiplexed
        self.extended = message.is_extended
        self.masked = bool(message.node_mask)
        self.after_id = b'"' + (b', "extended": true' if self.extended else b', "extended": false')
        self.after_id += b', "arbitration_id": '
        self.fixed_id = format_can_id(message.frame_id, self.extended).encode()[2:]
        self.fixed_number = str(message.frame_id).encode()
        self.message = b', "message": ' + _json_bytes(message.name)
        self.by_decimals: dict[int, list[int]] = {}
        for i, sig in enumerate(self.signals):
            if sig.decimals is not None:
                self.by_decimals.setdefault(sig.decimals, []).append(i)


class _BatchText:
    """Text of fields computed once per batch for all its frames (rows = frame index)."""

    def __init__(self, batch: FrameBatch) -> None:
        self.batch = batch
        channels = _text_matrix([_json_bytes(c) for c in batch.channels] or [b'""'])
        self.channel: U8 | None = None
        if channels.shape[0] > 1:
            self.channel = np.ascontiguousarray(channels[batch.channel])
        self.channel_constant = bytes(channels[0][channels[0] != _PAD])
        self.timestamp = np.empty((len(batch), 0), np.uint8)
        if len(batch):
            slot = _timestamp_slot(batch.timestamp)
            self.timestamp = np.empty((len(batch), slot.width), np.uint8)
            slot.render(self.timestamp)


class _LinePlan:
    """The lines of one message in a batch: pieces (constant text, slots) side by side."""

    def __init__(
        self,
        pieces: list[bytes | _Slot],
        blanks: list[tuple[list[tuple[int, int]], list[BoolArray]]],
        index: npt.NDArray[np.intp],
    ) -> None:
        self.pieces = pieces
        self.index = index
        self.rows = int(index.shape[0])
        self.bounds = [0]
        for piece in pieces:
            size = len(piece) if isinstance(piece, bytes) else piece.width
            self.bounds.append(self.bounds[-1] + size)
        self.width = self.bounds[-1]
        # Spans of pieces to blank where a multiplexed signal is absent, as columns.
        self.blanks = [
            ([(self.bounds[a], self.bounds[b]) for a, b in spans], present)
            for spans, present in blanks
        ]

    def render(self, matrix: U8, first: int = 0) -> None:
        """Write lines ``first ..`` into ``matrix`` (rows, width), a block at a time."""
        template = np.frombuffer(
            b"".join(p if isinstance(p, bytes) else bytes(p.width) for p in self.pieces), np.uint8
        )
        step = max(64, _BLOCK_BYTES // self.width)  # the block stays in the cache
        for at in range(0, matrix.shape[0], step):
            block = matrix[at : at + step]
            block[:] = template
            start = first + at
            for piece, left, right in zip(self.pieces, self.bounds, self.bounds[1:], strict=False):
                if isinstance(piece, _Slot) and right > left:
                    piece.render(block[:, left:right], start)
            for spans, present in self.blanks:
                rows = slice(start, start + block.shape[0])
                _blank_absent(block, spans, [p[rows] for p in present])


def _merge(lines: list[npt.NDArray[np.bytes_]], indices: list[npt.NDArray[np.intp]]) -> list[bytes]:
    """Lines of several messages (each in frame order) in capture order, padding removed.

    A thousand lines of capture order at a time: each message's rows in that window are
    consecutive, so they are turned into bytes objects together, ordered, joined and
    stripped while still in the cache (all at once, a batch's bytes objects would not be).
    """
    sizes = np.array([len(i) for i in indices])
    total = int(sizes.sum())
    group = np.repeat(np.arange(len(indices)), sizes)
    order = np.argsort(np.concatenate(indices), kind="stable")
    group = group[order]  # message of each line, in capture order
    row = order - np.repeat(np.cumsum(sizes) - sizes, sizes)[order]  # row in its message
    window = np.arange(total) // _PIECE_LINES
    windows = int(window[-1]) + 1
    counts = np.bincount(window * len(indices) + group, minlength=windows * len(indices))
    counts = counts.reshape(windows, len(indices))
    ends = np.cumsum(counts, axis=0)  # rows of each message up to each window's end
    starts = ends - counts
    before = np.cumsum(counts, axis=1) - counts  # lines of earlier messages in the window
    local = (before[window, group] + row - starts[window, group]).tolist()
    pieces: list[bytes] = []
    for w in range(windows):
        chunk: list[bytes] = []
        for g in np.flatnonzero(counts[w]).tolist():
            chunk += lines[g][starts[w, g] : ends[w, g]].tolist()
        take = local[w * _PIECE_LINES : (w + 1) * _PIECE_LINES]
        chosen = operator.itemgetter(*take)(chunk) if len(take) > 1 else (chunk[take[0]],)
        pieces.append(b"".join(chosen).replace(b"\0", b""))
    return pieces


def _hex_ids(can_id: npt.NDArray[np.uint32], extended: bool) -> U8:
    """Identifiers as 8 (extended) or 3 (standard) upper-case hex digits."""
    ids = can_id.astype(np.intp)
    words = np.stack([_HEX4[ids >> 16], _HEX4[ids & 0xFFFF]], axis=1)
    return _chars(words).reshape(-1, 8)[:, 0 if extended else 5 :]


# -- the formatter ------------------------------------------------------------------------
class JsonLinesFormatter:
    """Turns decoded batches into JSON Lines (see the module docstring).

    ``db`` must be the database the results were decoded with: value-table names need it
    to decode raw values (for scaled signals that have a value table).  One formatter
    reuses one line buffer from batch to batch: use it from one thread at a time.
    """

    def __init__(self, db: ChargerDatabase, options: JsonLinesOptions | None = None) -> None:
        self.db = db
        self.options = options or JsonLinesOptions()
        self._layouts: dict[str, _MessageLayout] = {}
        self._arena = bytearray()
        raw_db = raw_database(db) if self.options.choices else None
        self._raw_decoder = BatchDecoder(raw_db) if raw_db is not None else None

    def raw_values(self, batch: FrameBatch, result: DecodeResult) -> DecodeResult | None:
        """The raw values value-table names are looked up by (None: the decoded values)."""
        if self._raw_decoder is None or not result.decoded_frames:
            return None
        return self._raw_decoder.decode(batch)

    def format(self, batch: FrameBatch, result: DecodeResult) -> bytes:
        """The decoded frames of ``batch`` as JSON Lines (each line ends with ``\\n``)."""
        return b"".join(self.format_pieces(batch, result))

    def format_pieces(self, batch: FrameBatch, result: DecodeResult) -> list[bytes]:
        """Like :meth:`format`, in pieces of about a thousand lines (to write one by one)."""
        if not result.decoded_frames:
            return []
        raw = self.raw_values(batch, result)
        text = _BatchText(batch)
        plans: list[_LinePlan] = []
        for name, decoded in result.messages.items():
            raw_signals = raw.messages[name].signals if raw is not None else decoded.signals
            plans.append(self._line_plan(batch, text, decoded, raw_signals))
        # The lines are rendered into one buffer kept from batch to batch (no fresh pages
        # each time), at most _ARENA_BYTES of them at a time: a stretch of the batch.
        widths = np.zeros(len(batch), np.int64)
        for plan in plans:
            widths[plan.index] = plan.width
        ends = np.cumsum(widths)
        pieces: list[bytes] = []
        start = 0
        while start < len(batch):
            base = int(ends[start - 1]) if start else 0
            stop = max(int(np.searchsorted(ends, base + _ARENA_BYTES, "right")), start + 1)
            pieces += self._render_stretch(plans, start, stop, int(ends[stop - 1]) - base)
            start = stop
        return pieces

    def _render_stretch(
        self, plans: list[_LinePlan], start: int, stop: int, size: int
    ) -> list[bytes]:
        """The lines of frames ``start .. stop - 1`` of the batch, merged in capture order."""
        if len(self._arena) < size:
            self._arena = bytearray(size)
        lines: list[npt.NDArray[np.bytes_]] = []
        indices: list[npt.NDArray[np.intp]] = []
        offset = 0
        for plan in plans:
            first, last = np.searchsorted(plan.index, (start, stop)).tolist()
            if last == first:
                continue
            rows = last - first
            matrix = np.frombuffer(self._arena, np.uint8, rows * plan.width, offset)
            matrix = matrix.reshape(rows, plan.width)
            plan.render(matrix, first)
            lines.append(matrix.view(f"S{plan.width}").reshape(-1))
            indices.append(plan.index[first:last])
            offset += rows * plan.width
        return _merge(lines, indices) if lines else []

    def _layout(self, message: MessageDef) -> _MessageLayout:
        found = self._layouts.get(message.name)
        if found is None:
            found = self._layouts[message.name] = _MessageLayout(message, self.options)
        return found

    def _line_plan(
        self, batch: FrameBatch, text: _BatchText, decoded: DecodedMessage, raw: Any
    ) -> _LinePlan:
        """The lines of ``decoded``: constant text and value slots, ready to render."""
        layout = self._layout(decoded.message)
        index = decoded.index
        pieces: list[bytes | _Slot] = [b'{"timestamp": ', _Slot([_rows(text.timestamp, index)])]
        pieces.append(b', "channel": ')
        if text.channel is None:
            pieces.append(text.channel_constant)
        else:
            pieces.append(_Slot([_rows(text.channel, index)]))
        pieces.append(b', "id": "0x')
        if not layout.masked:
            pieces += [layout.fixed_id, layout.after_id, layout.fixed_number]
        else:
            ids = batch.can_id[index]
            pieces += [
                _Slot([_hex_ids(ids, layout.extended)]),
                layout.after_id,
                _Slot([_digits(ids.astype(np.int64), len(str(int(ids.max()))))]),
            ]
        pieces.append(layout.message)
        signal_slots = self._signal_slots(layout, decoded, raw)
        if layout.masked:
            pieces += [b', "node": ', signal_slots.pop()]
        pieces.append(b', "signals": {')
        mux = layout.multiplexed
        segments: list[tuple[int, int, str]] = []  # (first piece, end piece, signal)
        for i, (sig, slot) in enumerate(zip(layout.signals, signal_slots, strict=True)):
            segments.append((len(pieces), len(pieces) + 2, sig.signal.name))
            pieces += [b", " + sig.key if (i or mux) else sig.key, slot]
        pieces.append(b"}")
        unit_segments: list[tuple[int, int, str]] = []
        if self.options.units:
            pieces.append(b', "units": {')
            for sig in layout.signals:
                if sig.unit:
                    comma = b", " if unit_segments or mux else b""
                    unit_segments.append((len(pieces), len(pieces) + 1, sig.signal.name))
                    pieces.append(comma + sig.key + sig.unit)
            pieces.append(b"}")
        pieces.append(b"}\n")
        blanks = [
            ([(a, b) for a, b, _ in spans], [decoded.present[n] for *_, n in spans])
            for spans in (segments, unit_segments)
            if mux and spans
        ]
        return _LinePlan(pieces, blanks, decoded.index)

    def _signal_slots(
        self, layout: _MessageLayout, decoded: DecodedMessage, raw: Any
    ) -> list[_Slot]:
        """One slot per signal in message order, then the node slot if the message has one."""
        columns = [np.asarray(decoded.signals[s.signal.name]) for s in layout.signals]
        slots: list[_Slot | None] = [None] * len(columns)
        integers = [i for i, c in enumerate(columns) if c.dtype.kind in "iubO"]
        extra = [decoded.node] if layout.masked else []
        integer_slots = _integer_slots([columns[i] for i in integers] + extra)
        for i, slot in zip(integers, integer_slots, strict=False):
            slots[i] = slot
        for decimals, members in layout.by_decimals.items():
            chosen = [i for i in members if slots[i] is None]
            if chosen:
                offsets = [float(layout.signals[i].signal.offset) for i in chosen]
                stacked = [columns[i].astype(np.float64, copy=False) for i in chosen]
                for i, slot in zip(chosen, _decimal_slots(stacked, decimals, offsets), strict=True):
                    slots[i] = slot
        for i, column in enumerate(columns):
            if slots[i] is None:
                floats = column.astype(np.float64, copy=False)
                single = layout.signals[i].single
                slots[i] = _single_slot(floats) if single else _float_slot(floats)
        for i, sig in enumerate(layout.signals):
            current = slots[i]
            if sig.choices is not None and current is not None:
                slots[i] = sig.choices.named(current, np.asarray(raw[sig.signal.name]))
        done = [s for s in slots if s is not None]
        if extra:
            done.append(integer_slots[-1])
        return done


def _timestamp_slot(timestamps: F64) -> _Slot:
    """6 decimals where exact; 9 if exact for the whole batch; else ``repr`` (never rounded)."""
    ts = timestamps.astype(np.float64, copy=False)
    magnitude = np.abs(ts)
    exact, whole, fraction = _exact_fixed(magnitude, 6)
    decimals = 6
    if not exact.all():
        exact9, whole9, fraction9 = _exact_fixed(magnitude, 9)
        if exact9.all():
            exact, whole, fraction, decimals = exact9, whole9, fraction9, 9
    slot = _Slot(
        [_digits(whole, len(str(int(whole.max())))), b".", _padded(fraction, decimals)],
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


def _blank_absent(matrix: U8, spans: list[tuple[int, int]], present: list[BoolArray]) -> None:
    """Blank the segments of absent signals and the ``", "`` before the first present one."""
    if not spans:
        return
    for (start, end), here in zip(spans, present, strict=True):
        if not here.all():
            matrix[~here, start:end] = _PAD
    stacked = np.stack(present, axis=1)
    first = np.argmax(stacked, axis=1)
    rows = np.flatnonzero(stacked.any(axis=1))
    starts = np.array([s for s, _ in spans], np.intp)[first[rows]]
    matrix[rows, starts] = _PAD
    matrix[rows, starts + 1] = _PAD


# -- the straightforward definition -------------------------------------------------------
def reference_lines(
    formatter: JsonLinesFormatter, batch: FrameBatch, result: DecodeResult
) -> list[str]:
    """The lines of :meth:`JsonLinesFormatter.format`, made with one ``json.dumps`` per frame.

    The definition the fast path is checked against (tests, benchmark): per frame a dict
    of the decoded values, rounded with Python's ``round`` where the rule says so.  Slow.
    """
    raw = formatter.raw_values(batch, result)
    options = formatter.options
    rows: list[tuple[int, str]] = []
    for name, decoded in result.messages.items():
        message = decoded.message
        tables = choice_names(message) if options.choices else {}
        raw_signals = raw.messages[name].signals if raw is not None else decoded.signals
        for j, i in enumerate(decoded.index.tolist()):
            can_id = int(batch.can_id[i])
            line: dict[str, Any] = {
                "timestamp": float(decoded.timestamp[j]),
                "channel": batch.channels[int(batch.channel[i])] if batch.channels else "",
                "id": format_can_id(can_id, message.is_extended),
                "extended": message.is_extended,
                "arbitration_id": can_id,
                "message": message.name,
            }
            if message.node_mask:
                line["node"] = int(decoded.node[j])
            signals: dict[str, Any] = {}
            units: dict[str, str] = {}
            for sig in message.signals:
                if not decoded.present[sig.name][j]:
                    continue
                value = _reference_value(sig, decoded.signals[sig.name][j])
                table = tables.get(sig.name)
                if table is not None:
                    value = _reference_choice(table, raw_signals[sig.name][j], value)
                signals[sig.name] = value
                if sig.unit:
                    units[sig.name] = sig.unit
            line["signals"] = signals
            if options.units:
                line["units"] = units
            rows.append((i, json.dumps(line, ensure_ascii=False, allow_nan=False)))
    rows.sort(key=operator.itemgetter(0))
    return [text for _, text in rows]


def _reference_value(sig: SignalDef, value: Any) -> Any:
    if not isinstance(value, (float, np.floating)):
        return int(value)
    number = float(value)
    if not math.isfinite(number):
        return None
    if is_single(sig):
        return float(str(np.float32(number)))
    decimals = signal_decimals(sig)
    if decimals is not None and (abs(number) + abs(sig.offset)) * 10**decimals <= EXACT_LIMIT:
        return round(number, decimals)
    return number


def _reference_choice(table: Mapping[int, str], raw: Any, value: Any) -> Any:
    if isinstance(raw, (float, np.floating)):
        if not math.isfinite(float(raw)):
            return value
        key = int(float(raw))
    else:
        key = int(raw)
    name = table.get(key)
    return value if name is None else name
