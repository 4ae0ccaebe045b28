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
* Full precision, as for IEEE float32/float64 signals: the shortest text that reads back as
  the same float (what Python's ``repr`` gives, possibly without its exponent notation).
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
value is shorter than its slot.  The lines are then put in capture order and one
``bytes.translate`` deletes the padding (NUL never occurs in the text itself: JSON escapes
it).  Float32 values, whose ``repr`` costs ~0.5 µs each, get their shortest text from exact
integer arithmetic on their 24-bit mantissa.  :func:`reference_lines` writes the same lines
the straightforward way, one ``json.dumps`` per frame; tests and benchmark check both agree.
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
from candiag.ingest.frames import FrameBatch

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
_PIECE_LINES = 2048  # lines joined and stripped of padding at a time (well inside the cache)
_BIG = 10_000  # values below this take one lookup in the 4-digit tables
_FLOAT53 = float(2**53)


# -- digit tables -------------------------------------------------------------------------
def _digit_tables() -> U8:
    """Rows of 4 ASCII digits for 0..9999, three ways (offsets below).

    ``[0, 10000)``: leading zeros as NUL and 0 as four NULs (a group above the value's
    first digit); ``[10000, 20000)``: leading zeros as NUL but 0 as ``"0"`` (a value's last
    group when nothing is above it); ``[20000, 30000)``: zero-padded.
    """
    padded = np.array([list(f"{v:04d}".encode()) for v in range(_BIG)], np.uint8)
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
    rows[:, :decimals] = [list(f"{v:0{decimals}d}".encode()) for v in range(10**decimals)]
    for col in range(decimals - 1, 0, -1):
        rows[np.all(rows[:, col:decimals] == ord("0"), axis=1), col] = _PAD
    return rows.view(np.uint32).reshape(-1)


_FRACTIONS = {d: _fraction_table(d) for d in range(1, 5)}
# 4 upper-case hex digits of 0..0xFFFF, one uint32 each.
_HEX4 = np.array([list(f"{v:04X}".encode()) for v in range(1 << 16)], np.uint8).view(np.uint32)
_HEX4 = _HEX4.reshape(-1)
_POW10 = np.array([10**i for i in range(19)], np.int64)
_POW10F = np.array([10.0**i for i in range(19)])
_POW5 = np.array([5**i for i in range(19)], np.int64)


# -- public helpers -----------------------------------------------------------------------
@dataclass(frozen=True)
class JsonLinesOptions:
    """What each line carries beyond the default: units, value-table names."""

    units: bool = False
    choices: bool = False


def format_id(can_id: int, extended: bool) -> str:
    """``0x123`` for a standard identifier, ``0x00000285`` for an extended one."""
    return f"0x{can_id:08X}" if extended else f"0x{can_id:03X}"


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

    def render(self, view: U8) -> None:
        column = 0
        if self.sign is not None:
            view[:, 0] = self.sign
            column = 1
        for part in self.parts:
            if isinstance(part, bytes):
                view[:, column : column + len(part)] = np.frombuffer(part, np.uint8)
                column += len(part)
            else:
                _put(view[:, column : column + part.shape[1]], part)
                column += part.shape[1]
        if column < view.shape[1]:
            view[:, column:] = _PAD
        if self.replace is not None and self.replacement is not None:
            rows = np.zeros((self.replacement.shape[0], view.shape[1]), np.uint8)
            rows[:, : self.replacement.shape[1]] = self.replacement
            view[self.replace] = rows


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
    """IEEE float values in full precision: exact arithmetic for float32 numbers, else repr."""
    with np.errstate(invalid="ignore", over="ignore"):
        single = values.astype(np.float32)
        is_single = np.isfinite(values) & (single == values)
    good, scaled, decimals = _single_digits(np.abs(np.where(is_single, single, np.float32(0))))
    good &= is_single
    if not good.any():
        return _Slot([_text_matrix([_float_text(v) for v in values.tolist()])])
    places = max(int(decimals.max()), 1)
    whole = scaled // _POW10[decimals]
    fraction = (scaled % _POW10[decimals]) * _POW10[places - decimals]
    slot = _Slot(
        [_digits(whole, len(str(int(whole.max())))), b".", _fraction(fraction, places)],
        _signs(np.signbit(values) & good),
    )
    return _replaced(slot, ~good, values)


def _single_digits(magnitude: npt.NDArray[np.float32]) -> tuple[BoolArray, I64, I64]:
    """The shortest decimal text ``k / 10**d`` that reads back as each float32 magnitude.

    Returns where one with at most 16 decimals and ``k < 2**53`` exists (elsewhere the
    caller uses ``repr``), ``k`` and ``d``.  A float32 is ``m * 2**-q`` (or an integer)
    with ``m`` odd and below ``2**24``, so ``round(v * 10**d) = round(m * 5**d / 2**(q-d))``
    is exact in 64-bit integers for ``d <= 16``.  ``k / 10**d`` with ``k < 2**53`` is
    correctly rounded in floating point, as is reading the text back: a float equal to
    the value means the text reads back exactly.  From the most decimals that fit (at
    most ``q``, the exact expansion), one fewer is tried while the text still reads back
    (fewer decimals never read back when more do not).
    """
    bits = magnitude.view(np.uint32).astype(np.int64)
    biased = bits >> 23
    m = bits & 0x7FFFFF
    m |= np.where(biased > 0, 0x800000, 0)
    e = np.maximum(biased, 1) - 150  # value = m * 2**e
    zero = m == 0
    lowest = (((m & -m).astype(np.float32).view(np.uint32) >> 23).astype(np.int64)) - 127
    lowest[zero] = 0
    m >>= lowest  # m odd: the exact expansion has -e decimals
    e += lowest
    value = magnitude.astype(np.float64)
    integral = (e >= 0) | zero
    # Most decimals with value * 10**d < 2**53: from the binary exponent, then one check.
    binary = biased - 127
    places = np.clip(((52 - binary) * 0.30103).astype(np.int64), 0, 16)
    places += (value * _POW10F[np.minimum(places + 1, 16)] < _FLOAT53) & (places < 16)
    places -= (value * _POW10F[places] >= _FLOAT53) & (places > 0)
    places = np.where(integral, 0, np.minimum(places, -e))
    shift = np.where(integral, 0, -e - places)
    with np.errstate(over="ignore", invalid="ignore"):
        whole = np.where(integral, value, 0.0)
        digits = np.where(
            integral,
            np.minimum(whole, _FLOAT53).astype(np.int64),
            _round_shift(m * _POW5[places], shift),
        )
        found = np.where(
            integral, whole < _FLOAT53, digits.astype(np.float64) / _POW10F[places] == value
        )
    # No text of at most 16 digits below 2**53 reads back: 17 significant digits always
    # do (binary64), exact while the decimals stay within the 16 that fit 64 bits.
    rows = np.flatnonzero(~found & ~integral & (places < 15))
    if rows.size:
        more = places[rows] + 1
        k = _round_shift(m[rows] * _POW5[more], shift[rows] - 1)
        short = k < 10**16
        more += short
        k = np.where(short, _round_shift(m[rows] * _POW5[more], shift[rows] - 2), k)
        fits = more <= -e[rows]  # else the exact expansion, shorter, was found already
        rows, more, k = rows[fits], more[fits], k[fits]
        digits[rows] = k
        places[rows] = more
        found[rows] = True
    # One decimal fewer, while the text still reads back.
    rows = np.flatnonzero(found & (places > 0) & (digits < _FLOAT53))
    while rows.size:
        d = places[rows] - 1
        k = _round_shift(m[rows] * _POW5[d], shift[rows] + 1)
        ok = k.astype(np.float64) / _POW10F[d] == value[rows]
        rows = rows[ok]
        digits[rows] = k[ok]
        places[rows] = d[ok]
        shift[rows] += 1
        rows = rows[places[rows] > 0]
    return found, digits, places


def _round_shift(x: I64, shift: I64) -> I64:
    """``round(x / 2**shift)``, ties to even, for ``0 <= x < 2**62`` and ``shift >= 0``."""
    down = np.minimum(shift, 62)
    q = x >> down
    twice = (x - (q << down)) << 1
    full = np.left_shift(1, down)
    rounded: I64 = q + ((twice > full) | ((twice == full) & ((q & 1) == 1)))
    rounded[shift > 62] = 0  # x / 2**63 < 1/2
    return rounded


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
        self.fixed_id = format_id(message.frame_id, self.extended).encode()[2:]
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
        self.channel: U8 | None = None if channels.shape[0] == 1 else channels[batch.channel]
        self.channel_constant = bytes(channels[0][channels[0] != _PAD])
        self.timestamp = np.empty((len(batch), 0), np.uint8)
        if len(batch):
            slot = _timestamp_slot(batch.timestamp)
            self.timestamp = np.empty((len(batch), slot.width), np.uint8)
            slot.render(self.timestamp)
        self._hex: U8 | None = None
        self._number: U8 | None = None

    @property
    def hex_id(self) -> U8:
        """8 upper-case hex digits of every identifier (computed when first needed)."""
        if self._hex is None:
            can_id = self.batch.can_id.astype(np.intp)
            words = np.stack([_HEX4[can_id >> 16], _HEX4[can_id & 0xFFFF]], axis=1)
            self._hex = _chars(words).reshape(-1, 8)
        return self._hex

    @property
    def number_id(self) -> U8:
        """Every identifier in decimal, right-aligned in 10 columns (leading NULs)."""
        if self._number is None:
            self._number = _digits(self.batch.can_id.astype(np.int64), 10)
        return self._number


# -- the formatter ------------------------------------------------------------------------
class JsonLinesFormatter:
    """Turns decoded batches into JSON Lines (see the module docstring).

    ``db`` must be the database the results were decoded with: value-table names need it
    to decode raw values (for scaled signals that have a value table).
    """

    def __init__(self, db: ChargerDatabase, options: JsonLinesOptions | None = None) -> None:
        self.db = db
        self.options = options or JsonLinesOptions()
        self._layouts: dict[str, _MessageLayout] = {}
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
        """Like :meth:`format`, in pieces of a few thousand lines (to write one by one)."""
        if not result.decoded_frames:
            return []
        raw = self.raw_values(batch, result)
        text = _BatchText(batch)
        lines: list[bytes] = []
        indices: list[npt.NDArray[np.intp]] = []
        for name, decoded in result.messages.items():
            raw_signals = raw.messages[name].signals if raw is not None else decoded.signals
            matrix = self._message_matrix(batch, text, decoded, raw_signals)
            # One bytes object per line, NUL padding still inside (deleted below).
            lines += matrix.view(f"S{matrix.shape[1]}").reshape(-1).tolist()
            indices.append(decoded.index)
        if len(indices) > 1:
            order: list[int] = np.argsort(np.concatenate(indices), kind="stable").tolist()
        else:
            order = list(range(len(lines)))
        pieces: list[bytes] = []
        for start in range(0, len(order), _PIECE_LINES):
            take = order[start : start + _PIECE_LINES]
            chosen = operator.itemgetter(*take)(lines) if len(take) > 1 else (lines[take[0]],)
            pieces.append(b"".join(chosen).replace(b"\0", b""))
        return pieces

    def _layout(self, message: MessageDef) -> _MessageLayout:
        found = self._layouts.get(message.name)
        if found is None:
            found = self._layouts[message.name] = _MessageLayout(message, self.options)
        return found

    def _message_matrix(
        self, batch: FrameBatch, text: _BatchText, decoded: DecodedMessage, raw: Any
    ) -> U8:
        layout = self._layout(decoded.message)
        index = decoded.index
        pieces: list[bytes | _Slot] = [b'{"timestamp": ', _Slot([text.timestamp[index]])]
        pieces.append(b', "channel": ')
        if text.channel is None:
            pieces.append(text.channel_constant)
        else:
            pieces.append(_Slot([text.channel[index]]))
        pieces.append(b', "id": "0x')
        if not layout.masked:
            pieces += [layout.fixed_id, layout.after_id, layout.fixed_number]
        else:
            ids = batch.can_id[index]
            width = len(str(int(ids.max())))
            pieces += [
                _Slot([text.hex_id[index, 5:] if not layout.extended else text.hex_id[index]]),
                layout.after_id,
                _Slot([text.number_id[index, 10 - width :]]),
            ]
        pieces.append(layout.message)
        signal_slots = self._signal_slots(layout, decoded, raw)
        if layout.masked:
            pieces += [b', "node": ', signal_slots.pop()]
        pieces.append(b', "signals": {')
        mux = layout.multiplexed
        segments: list[tuple[int, str]] = []  # (piece index of the key, signal)
        for i, (sig, slot) in enumerate(zip(layout.signals, signal_slots, strict=True)):
            segments.append((len(pieces), sig.signal.name))
            pieces += [b", " + sig.key if (i or mux) else sig.key, slot]
        pieces.append(b"}")
        unit_segments: list[tuple[int, str]] = []
        if self.options.units:
            pieces.append(b', "units": {')
            for sig in layout.signals:
                if sig.unit:
                    comma = b", " if unit_segments or mux else b""
                    unit_segments.append((len(pieces), sig.signal.name))
                    pieces.append(comma + sig.key + sig.unit)
            pieces.append(b"}")
        pieces.append(b"}\n")
        matrix, bounds = _assemble(len(decoded), pieces)
        if mux:
            for spans, width in ((segments, 2), (unit_segments, 1)):
                _blank_absent(
                    matrix,
                    [(bounds[p], bounds[p + width]) for p, _ in spans],
                    [decoded.present[name] for _, name in spans],
                )
        return matrix

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
                slots[i] = _float_slot(column.astype(np.float64, copy=False))
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


def _assemble(rows: int, pieces: list[bytes | _Slot]) -> tuple[U8, list[int]]:
    """The line matrix: constants from one template row, each slot rendered in place.

    Returns the matrix and the column where each piece starts (then the total width).
    """
    bounds = [0]
    for piece in pieces:
        bounds.append(bounds[-1] + (len(piece) if isinstance(piece, bytes) else piece.width))
    row = b"".join(p if isinstance(p, bytes) else bytes(p.width) for p in pieces)
    matrix = np.empty((rows, bounds[-1]), np.uint8)
    matrix[:] = np.frombuffer(row, np.uint8)
    for piece, start, end in zip(pieces, bounds, bounds[1:], strict=False):
        if isinstance(piece, _Slot) and end > start:
            piece.render(matrix[:, start:end])
    return matrix, bounds


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
                "id": format_id(can_id, message.is_extended),
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
