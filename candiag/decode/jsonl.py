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
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt

from candiag.decode.dbc import ChargerDatabase, MessageDef, SignalDef
from candiag.decode.decoder import BatchDecoder, DecodedMessage, DecodeResult
from candiag.decode.jsontext import (
    EXACT_LIMIT,
    HEX4,
    MAX_DECIMALS,
    PAD,
    ChoiceTable,
    Slot,
    char_bytes,
    decimal_slots,
    digit_text,
    float_slot,
    integer_slots,
    json_bytes,
    single_slot,
    take_rows,
    text_matrix,
    timestamp_slot,
)
from candiag.ingest.frames import FrameBatch, format_can_id

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Column = npt.NDArray[Any]

#: Most decimals a decimal scale or offset may carry to be rounded (beyond: full precision).
_ARENA_BYTES = 1 << 26  # at most this much line text is rendered at a time (memory)
_BLOCK_BYTES = 1 << 21  # line matrices are built in blocks of about this size (cache)
_PIECE_LINES = 1024  # lines joined and stripped of padding at a time (well inside the cache)


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
    return {sig.name: dict(sig.choices) for sig in message.signals if sig.choices}


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


# -- per message layout -------------------------------------------------------------------
@dataclass
class _SignalLayout:
    signal: SignalDef
    key: bytes  # '"Name": '
    decimals: int | None
    unit: bytes  # JSON string of the unit, b"" when none
    choices: ChoiceTable | None

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
                key=json_bytes(s.name) + b": ",
                decimals=signal_decimals(s),
                unit=json_bytes(s.unit) if s.unit else b"",
                choices=ChoiceTable(tables[s.name]) if s.name in tables else None,
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
        self.message = b', "message": ' + json_bytes(message.name)
        self.by_decimals: dict[int, list[int]] = {}
        for i, sig in enumerate(self.signals):
            if sig.decimals is not None:
                self.by_decimals.setdefault(sig.decimals, []).append(i)


class _BatchText:
    """Text of fields computed once per batch for all its frames (rows = frame index)."""

    def __init__(self, batch: FrameBatch) -> None:
        self.batch = batch
        channels = text_matrix([json_bytes(c) for c in batch.channels] or [b'""'])
        self.channel: U8 | None = None
        if channels.shape[0] > 1:
            self.channel = np.ascontiguousarray(channels[batch.channel])
        self.channel_constant = bytes(channels[0][channels[0] != PAD])
        self.timestamp = np.empty((len(batch), 0), np.uint8)
        if len(batch):
            slot = timestamp_slot(batch.timestamp)
            self.timestamp = np.empty((len(batch), slot.width), np.uint8)
            slot.render(self.timestamp)


class _LinePlan:
    """The lines of one message in a batch: pieces (constant text, slots) side by side."""

    def __init__(
        self,
        pieces: list[bytes | Slot],
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
                if isinstance(piece, Slot) and right > left:
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
    words = np.stack([HEX4[ids >> 16], HEX4[ids & 0xFFFF]], axis=1)
    return char_bytes(words).reshape(-1, 8)[:, 0 if extended else 5 :]


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
        pieces: list[bytes | Slot] = [b'{"timestamp": ', Slot([take_rows(text.timestamp, index)])]
        pieces.append(b', "channel": ')
        if text.channel is None:
            pieces.append(text.channel_constant)
        else:
            pieces.append(Slot([take_rows(text.channel, index)]))
        pieces.append(b', "id": "0x')
        if not layout.masked:
            pieces += [layout.fixed_id, layout.after_id, layout.fixed_number]
        else:
            ids = batch.can_id[index]
            pieces += [
                Slot([_hex_ids(ids, layout.extended)]),
                layout.after_id,
                Slot([digit_text(ids.astype(np.int64), len(str(int(ids.max()))))]),
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
    ) -> list[Slot]:
        """One slot per signal in message order, then the node slot if the message has one."""
        columns = [np.asarray(decoded.signals[s.signal.name]) for s in layout.signals]
        slots: list[Slot | None] = [None] * len(columns)
        integers = [i for i, c in enumerate(columns) if c.dtype.kind in "iubO"]
        extra = [decoded.node] if layout.masked else []
        ints = integer_slots([columns[i] for i in integers] + extra)
        for i, slot in zip(integers, ints, strict=False):
            slots[i] = slot
        for decimals, members in layout.by_decimals.items():
            chosen = [i for i in members if slots[i] is None]
            if chosen:
                offsets = [float(layout.signals[i].signal.offset) for i in chosen]
                stacked = [columns[i].astype(np.float64, copy=False) for i in chosen]
                for i, slot in zip(chosen, decimal_slots(stacked, decimals, offsets), strict=True):
                    slots[i] = slot
        for i, column in enumerate(columns):
            if slots[i] is None:
                floats = column.astype(np.float64, copy=False)
                single = layout.signals[i].single
                slots[i] = single_slot(floats) if single else float_slot(floats)
        for i, sig in enumerate(layout.signals):
            current = slots[i]
            if sig.choices is not None and current is not None:
                slots[i] = sig.choices.named(current, np.asarray(raw[sig.signal.name]))
        done = [s for s in slots if s is not None]
        if extra:
            done.append(ints[-1])
        return done


def _blank_absent(matrix: U8, spans: list[tuple[int, int]], present: list[BoolArray]) -> None:
    """Blank the segments of absent signals and the ``", "`` before the first present one."""
    if not spans:
        return
    for (start, end), here in zip(spans, present, strict=True):
        if not here.all():
            matrix[~here, start:end] = PAD
    stacked = np.stack(present, axis=1)
    first = np.argmax(stacked, axis=1)
    rows = np.flatnonzero(stacked.any(axis=1))
    starts = np.array([s for s, _ in spans], np.intp)[first[rows]]
    matrix[rows, starts] = PAD
    matrix[rows, starts + 1] = PAD


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
