"""The vectorized decoder: a :class:`FrameBatch` in, per-message signal arrays out.

Why not cantools' ``decode_message``: it works one frame at a time (tens of µs per frame,
docs/dbc.md "Decoding"), far too slow for hours of captured traffic.  Here each signal's bit extraction is compiled once into a plan (which 8-byte
window, which shift, which mask) and then applied to all frames of a message at once as
uint64 arithmetic.  The results equal cantools' ``decode_message(..., decode_choices=False)``:
integers exactly (int64, or uint64 for unsigned 64-bit signals), floats to rounding.

Conventions kept from cantools: big-endian (Motorola) start bits are the MSB in
cantools' sawtooth numbering; a payload longer than the message is decoded from its
first bytes, a shorter one is not decoded (counted in :attr:`DecodeResult.short_frames`).
Multiplexed signals (including nested multiplexers) are decoded for every frame of their
message and :attr:`DecodedMessage.present` says in which frames they exist: a multiplexed
signal is present when its multiplexer is present and holds one of its ids.  Where cantools
refuses a whole frame because a multiplexer value selects no signals, candiag keeps the
signals that are still valid (the unmultiplexed ones, the multiplexer itself).

DBCs loaded leniently (:mod:`candiag.decode.dbc`): overlapping signals are each decoded
from their own bits (cantools refuses such frames with "unpacking failed" when the
overlapping signals have the same byte order, and decodes them like candiag otherwise);
signals past the message end are not in :attr:`MessageDef.signals` at all.  IEEE half
floats (16 bits) are decoded like cantools' bitstruct does, and integer signals longer
than 64 bits (CAN FD) are decoded exactly as Python ints, frame by frame: no numpy type
holds them, and no real DBC seen has one (docs/dbc.md).

Why one file of ~630 lines: the plans (signal, word, multiplexer) and the batch decoder
that runs them are one algorithm.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from candiag.decode.dbc import ChargerDatabase, MessageDef, SignalDef
from candiag.ingest.frames import FrameBatch

IntpArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]
U64 = npt.NDArray[np.uint64]
U8 = npt.NDArray[np.uint8]

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1


#: Direction codes of :attr:`Exchange.direction` (docs/protocols.md, rule 3).
DIRECTION_NONE, DIRECTION_REQUEST, DIRECTION_REPLY, DIRECTION_REPORT = 0, 1, 2, 3
DIRECTION_UNKNOWN = -1  # a two-way message whose direction field holds neither kind
DIRECTION_CODES = {"": DIRECTION_NONE, "request": DIRECTION_REQUEST, "reply": DIRECTION_REPLY}
DIRECTION_CODES["report"] = DIRECTION_REPORT
DIRECTION_NAMES = {v: k for k, v in DIRECTION_CODES.items()} | {DIRECTION_UNKNOWN: "unknown"}


@dataclass
class Exchange:
    """The identifier fields of a protocol pack's frames (docs/protocols.md, "Resolving an
    identifier"), one value per frame of a :class:`DecodedMessage`.

    ``peer`` is the other end's address (the controller; -1 unknown), ``group`` and
    ``serial`` -1 where the message has none, ``error`` the error code a reply carries
    (the identifier's error field, else a ``reply_error`` signal that is not its success
    value; 0: none), ``direction`` one of the ``DIRECTION_*`` codes and ``command`` the
    register/command the frame carries (-1 where it has none).
    """

    peer: npt.NDArray[np.int32]
    group: npt.NDArray[np.int32]
    error: npt.NDArray[np.int64]
    serial: npt.NDArray[np.int32]
    direction: npt.NDArray[np.int8]
    command: npt.NDArray[np.int64]

    def slice(self, a: int, b: int) -> Exchange:
        return Exchange(
            self.peer[a:b],
            self.group[a:b],
            self.error[a:b],
            self.serial[a:b],
            self.direction[a:b],
            self.command[a:b],
        )


@dataclass
class DecodedMessage:
    """All frames of one message in a batch, in frame order, with one array per signal."""

    message: MessageDef
    index: IntpArray  # frame indices into the decoded batch
    timestamp: npt.NDArray[np.float64]
    node: npt.NDArray[np.int32]  # -1 when the message carries no node address
    signals: Mapping[str, npt.NDArray[np.generic]]
    present: Mapping[str, BoolArray]  # all True except for multiplexed signals
    #: Identifier fields, direction and error of a protocol pack's message (None otherwise).
    exchange: Exchange | None = None

    def __len__(self) -> int:
        return int(self.index.shape[0])


@dataclass
class DecodeResult:
    """What one batch decoded into, plus what could not be decoded and why."""

    messages: dict[str, DecodedMessage]
    decoded_frames: int
    # Frames per identifier; bit 31 set for extended identifiers (see count_ids).
    unknown_ids: collections.Counter[int]
    short_frames: collections.Counter[int]
    error_frames: int
    remote_frames: int


@dataclass(frozen=True)
class _SignalPlan:
    """How to pull one signal out of a message's payload windows."""

    signal: SignalDef
    window: tuple[str, int]  # (byte order, first byte) of the 8-byte window
    shift: int  # right shift inside the window (little) / left shift before the spill byte (big)
    mask: np.uint64
    spill: int  # bits taken from the byte after the window (signals spanning 9 bytes)


class _MessagePlan:
    """Precompiled extraction plans for every signal of one message."""

    def __init__(self, message: MessageDef) -> None:
        self.message = message
        self.plans = [_plan_signal(message, sig) for sig in message.signals]
        self.width = max(8, message.length) + 8  # room for every window and spill byte
        by_name = {s.name: s for s in message.signals}
        self.mux_parents = {
            s.name: by_name[s.multiplexer_signal]
            for s in message.signals
            if s.multiplexer_signal is not None
        }
        self.names = tuple(s.name for s in message.signals)
        self.presence_steps = self._presence_steps()
        if self.is_classic:
            self.words = _WordPlan(self.plans)

    @property
    def is_classic(self) -> bool:
        """Every signal lies in the first 8 bytes: one little- and one big-endian word."""
        return self.message.length <= 8

    def decode_words(
        self, first_word: U64
    ) -> tuple[dict[str, npt.NDArray[np.generic]], dict[str, BoolArray]]:
        """Decode classic frames from bytes 0..7 read as a little-endian uint64."""
        return self.decode_pair(_word_pair(first_word))

    def decode_pair(
        self, pair: U64
    ) -> tuple[dict[str, npt.NDArray[np.generic]], dict[str, BoolArray]]:
        """Like :meth:`decode_words` from ``[words, words.byteswap()]`` (shape (2, n))."""
        columns = self.words.decode(pair)
        values = dict(zip(self.names, columns, strict=True))
        return values, self._presence(values, pair.shape[1])

    def decode_payload(
        self, payload: U8
    ) -> tuple[dict[str, npt.NDArray[np.generic]], dict[str, BoolArray]]:
        """Decode frames of any length from their payload rows (FD messages)."""
        n = payload.shape[0]
        if payload.shape[1] < self.width:
            padded = np.zeros((n, self.width), np.uint8)
            padded[:, : payload.shape[1]] = payload
            payload = padded
        windows: dict[tuple[str, int], U64] = {}
        values: dict[str, npt.NDArray[np.generic]] = {}
        for plan in self.plans:
            if plan.window[0] == "wide":
                values[plan.signal.name] = _decode_wide(payload, plan.signal)
                continue
            window = windows.get(plan.window)
            if window is None:
                window = windows[plan.window] = _window(payload, *plan.window)
            spill = payload[:, plan.window[1] + 8] if plan.spill else None
            values[plan.signal.name] = _scale(plan.signal, _extract(plan, window, spill))
        return values, self._presence(values, n)

    def _presence(self, values: dict[str, npt.NDArray[np.generic]], n: int) -> dict[str, BoolArray]:
        """Where each signal exists: always, or where its multiplexer chain selects it."""
        always = _always(n)
        if not self.mux_parents:
            return dict.fromkeys(self.names, always)
        present: dict[str, BoolArray] = {}
        selectors: dict[str, npt.NDArray[np.generic]] = {}
        for name, parent, ids in self.presence_steps:
            if parent is None:
                present[name] = always
                continue
            selector = selectors.get(parent)
            if selector is None:
                selector = selectors[parent] = _mux_selector(values[parent])
            if len(ids) == 1:
                hit: BoolArray = np.asarray(selector == ids[0], np.bool_)
            elif len(ids):
                hit = np.isin(selector, ids)
            else:
                hit = np.zeros(n, np.bool_)
            above = present[parent]
            present[name] = hit if above is always else above & hit
        return present

    def _presence_steps(self) -> list[tuple[str, str | None, npt.NDArray[np.generic]]]:
        """(signal, multiplexer, ids) with every multiplexer before the signals it selects."""
        steps: list[tuple[str, str | None, npt.NDArray[np.generic]]] = []
        done: set[str] = set()

        def visit(sig: SignalDef) -> None:
            if sig.name in done:
                return
            parent = self.mux_parents.get(sig.name)
            if parent is not None:
                visit(parent)
            done.add(sig.name)
            ids = _id_array(sig.multiplexer_ids or ())
            steps.append((sig.name, None if parent is None else parent.name, ids))

        for sig in self.message.signals:
            visit(sig)
        return steps


class _WordPlan:
    """All signals of a classic message extracted at once, as rows of one 2-D array.

    Signals are ordered by how they are scaled: exact integers (int64), then scaled
    values (float64), then the rest (IEEE floats, 64-bit unsigned, results beyond
    int64), which keep the per-signal path.  One shift, one mask, one sign extension
    and one multiply-add cover all signals of the first two kinds, so the cost of a
    message no longer grows with a Python call per signal; values are exactly those
    of :func:`_scale` (the same integer and float operations, element by element).
    """

    def __init__(self, plans: list[_SignalPlan]) -> None:
        kinds = [_scaling_kind(p.signal) for p in plans]
        order = [i for kind in ("int", "float", "other") for i, k in enumerate(kinds) if k == kind]
        ordered = [plans[i] for i in order]
        self.count = len(plans)
        self.n_int = kinds.count("int")
        self.n_float = kinds.count("float")
        self.others = [(j, p.signal) for j, p in enumerate(ordered) if kinds[order[j]] == "other"]
        # Position in kind order of each signal in message order (the inverse permutation,
        # written out: numpy's SIMD argsort gave a wrong permutation under QEMU's CPU
        # emulation in the microVM, which shifted decoded values between signals there).
        inverse = [0] * len(order)
        for position, index in enumerate(order):
            inverse[index] = position
        self.inverse = inverse
        self.shifts = np.array([[p.shift] for p in ordered], np.uint64).reshape(-1, 1)
        self.masks = np.array([[int(p.mask)] for p in ordered], np.uint64).reshape(-1, 1)
        big = [p.window[0] == "big" for p in ordered]
        self.uses_big = any(big)
        # Rows of the (little, big) word pair each signal reads; a slice keeps a view.
        self.rows: slice | npt.NDArray[np.intp] = (
            slice(1, 2)
            if big and all(big)
            else slice(0, 1)
            if not any(big)
            else np.array(big, np.intp)
        )
        signs = [
            1 << (p.signal.length - 1) if kind != "other" and _sign_extends(p.signal) else 0
            for p, kind in zip(ordered, (kinds[i] for i in order), strict=True)
        ]
        self.signs = np.array(signs, np.uint64).reshape(-1, 1) if any(signs) else None
        int_sigs = [p.signal for p in ordered[: self.n_int]]
        self.int_scaled = any(s.scale != 1 or s.offset != 0 for s in int_sigs)
        self.int_scale = np.array([_wrap_signed(int(s.scale)) for s in int_sigs], np.int64).reshape(
            -1, 1
        )
        self.int_offset = np.array(
            [_wrap_signed(int(s.offset)) for s in int_sigs], np.int64
        ).reshape(-1, 1)
        float_sigs = [p.signal for p in ordered[self.n_int : self.n_int + self.n_float]]
        self.float_scale = np.array([float(s.scale) for s in float_sigs]).reshape(-1, 1)
        self.float_offset = np.array([float(s.offset) for s in float_sigs]).reshape(-1, 1)

    def decode(self, pair: U64) -> list[npt.NDArray[np.generic]]:
        """One array per signal, in message order, from ``[words, words.byteswap()]``."""
        raw = pair[self.rows] >> self.shifts  # a new array: updated in place below
        raw &= self.masks
        if self.signs is not None:
            raw ^= self.signs
            raw -= self.signs
        ints: npt.NDArray[np.int64] = raw.view(np.int64)
        rows: list[npt.NDArray[np.generic]] = []
        a, b = self.n_int, self.n_int + self.n_float
        if a:
            int_rows = ints[:a]
            if self.int_scaled:
                int_rows *= self.int_scale
                int_rows += self.int_offset
            rows.extend(int_rows)
        if b > a:
            scaled = ints[a:b].astype(np.float64)
            scaled *= self.float_scale
            scaled += self.float_offset
            rows.extend(scaled)
        rows.extend(_scale(sig, raw[j]) for j, sig in self.others)
        return [rows[j] for j in self.inverse]


def _sign_extends(sig: SignalDef) -> bool:
    return sig.is_signed and not sig.is_float and sig.length < 64


def _scaling_kind(sig: SignalDef) -> str:
    """How :func:`_scale` treats ``sig``: "int" (int64), "float" (float64) or "other"."""
    n = sig.length
    if sig.is_float or (not sig.is_signed and n == 64):
        return "other"
    if not sig.is_integer:
        return "float"
    if sig.is_signed:
        lo, hi = -(1 << (n - 1)), (1 << (n - 1)) - 1
    else:
        lo, hi = 0, (1 << n) - 1
    scale, offset = int(sig.scale), int(sig.offset)
    if scale == 1 and offset == 0:
        return "int"
    ends = (lo * scale + offset, hi * scale + offset)
    return "int" if _INT64_MIN <= min(ends) and max(ends) <= _INT64_MAX else "other"


_ALWAYS: list[BoolArray] = [np.ones(0, np.bool_)]


def _always(n: int) -> BoolArray:
    """A read-only all-True mask of length ``n`` (a view of one shared array)."""
    ones = _ALWAYS[0]
    if len(ones) < n:  # grown rarely; a racing thread keeps its own copy
        ones = np.ones(max(n, 2 * len(ones), 4096), np.bool_)
        ones.flags.writeable = False
        _ALWAYS[0] = ones
    return ones[:n]


def _plan_signal(message: MessageDef, sig: SignalDef) -> _SignalPlan:
    n = sig.length
    if n > 64:  # decoded by _decode_wide
        return _SignalPlan(sig, ("wide", 0), 0, np.uint64(0), 0)
    mask = np.uint64((1 << n) - 1)
    if sig.byte_order == "little_endian":
        first_bit = sig.start  # LSB, counted from byte 0 bit 0
    else:
        # cantools' start bit of a Motorola signal is its MSB in sawtooth numbering;
        # network order counts from the MSB of byte 0.
        first_bit = 8 * (sig.start // 8) + (7 - sig.start % 8)
    last_byte = (first_bit + n - 1) // 8
    first_byte = 0 if last_byte < 8 else first_bit // 8
    rel = first_bit - 8 * first_byte
    spill = max(0, rel + n - 64)
    if sig.byte_order == "little_endian":
        return _SignalPlan(sig, ("little", first_byte), rel, mask, spill)
    shift = 64 - rel - n if not spill else spill
    return _SignalPlan(sig, ("big", first_byte), shift, mask, spill)


def _window(payload: U8, order: str, first_byte: int) -> U64:
    """Bytes ``first_byte .. first_byte+7`` of every frame as one native uint64."""
    block = np.ascontiguousarray(payload[:, first_byte : first_byte + 8])
    dtype = "<u8" if order == "little" else ">u8"
    return block.view(dtype).reshape(-1).astype(np.uint64, copy=False)


def _extract(plan: _SignalPlan, window: U64, spill_byte: U8 | None = None) -> U64:
    if plan.spill and spill_byte is not None:
        spill = spill_byte.astype(np.uint64)
        if plan.window[0] == "little":
            raw = (window >> np.uint64(plan.shift)) | (spill << np.uint64(64 - plan.shift))
        else:
            raw = (window << np.uint64(plan.spill)) | (spill >> np.uint64(8 - plan.spill))
        return raw & plan.mask
    raw = window >> np.uint64(plan.shift) if plan.shift else window
    if plan.signal.length < 64:
        raw = raw & plan.mask
    return raw


def _scale(sig: SignalDef, raw: U64) -> npt.NDArray[np.generic]:
    n = sig.length
    if sig.is_float:
        if n in _SMALL_FLOATS:
            unsigned, floating = _SMALL_FLOATS[n]
            with np.errstate(invalid="ignore"):  # signalling NaNs stay NaN, quietly
                value = raw.astype(unsigned).view(floating).astype(np.float64)
        else:
            value = raw.view(np.float64)
        if sig.scale == 1 and sig.offset == 0:
            return value
        with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN as Python floats give
            scaled: npt.NDArray[np.float64] = value * float(sig.scale) + float(sig.offset)
        return scaled
    if sig.is_signed:
        if n < 64:
            sign = np.uint64(1 << (n - 1))
            raw = (raw ^ sign) - sign
        ints: npt.NDArray[np.generic] = raw.view(np.int64)
        lo, hi = -(1 << (n - 1)), (1 << (n - 1)) - 1
    else:
        ints = raw.view(np.int64) if n < 64 else raw
        lo, hi = 0, (1 << n) - 1
    if not sig.is_integer:
        return ints.astype(np.float64) * float(sig.scale) + float(sig.offset)
    return _integer_scale(ints, lo, hi, int(sig.scale), int(sig.offset))


_SMALL_FLOATS: dict[int, tuple[type[np.generic], type[np.generic]]] = {
    16: (np.uint16, np.float16),
    32: (np.uint32, np.float32),
}


def _decode_wide(payload: U8, sig: SignalDef) -> npt.NDArray[np.generic]:
    """A signal longer than 64 bits, exactly as cantools gives it (Python ints or floats)."""
    n = sig.length
    big = sig.byte_order == "big_endian"
    first_bit = 8 * (sig.start // 8) + (7 - sig.start % 8) if big else sig.start
    first, last = first_bit // 8, (first_bit + n - 1) // 8
    width = last - first + 1
    block = np.ascontiguousarray(payload[:, first : last + 1]).tobytes()
    shift = 8 * width - (first_bit - 8 * first) - n if big else first_bit - 8 * first
    order: Literal["big", "little"] = "big" if big else "little"
    mask = (1 << n) - 1
    raws = [
        (int.from_bytes(block[i : i + width], order) >> shift) & mask
        for i in range(0, len(block), width)
    ]
    if sig.is_signed:
        sign = 1 << (n - 1)
        raws = [r - (sign << 1) if r & sign else r for r in raws]
    if sig.is_integer:
        scale, offset = int(sig.scale), int(sig.offset)
        out = np.empty(len(raws), dtype=object)
        out[:] = [r * scale + offset for r in raws]
        return out
    return np.array([r * sig.scale + sig.offset for r in raws], np.float64)


def _integer_scale(
    ints: npt.NDArray[np.generic], lo: int, hi: int, scale: int, offset: int
) -> npt.NDArray[np.generic]:
    """``raw * scale + offset`` exactly, in int64, uint64 or (if neither fits) Python ints."""
    if scale == 1 and offset == 0:
        return ints
    ends = (lo * scale + offset, hi * scale + offset)
    low, high = min(ends), max(ends)
    # Wrapping 64-bit arithmetic is exact whenever the true result fits the target type.
    if _INT64_MIN <= low and high <= _INT64_MAX:
        signed: npt.NDArray[np.int64] = ints.view(np.int64)
        return signed * np.int64(_wrap_signed(scale)) + np.int64(_wrap_signed(offset))
    if 0 <= low and high <= _UINT64_MAX:
        unsigned: npt.NDArray[np.uint64] = ints.view(np.uint64)
        return unsigned * np.uint64(scale % (1 << 64)) + np.uint64(offset % (1 << 64))
    return np.array([int(v) * scale + offset for v in ints.tolist()], dtype=object)


def _wrap_signed(value: int) -> int:
    value %= 1 << 64
    return value - (1 << 64) if value >= 1 << 63 else value


def _id_array(ids: tuple[int, ...]) -> npt.NDArray[np.generic]:
    """Multiplexer ids as int64 (Python ints beyond it, which no int64 value equals)."""
    try:
        return np.array(ids, np.int64)
    except OverflowError:
        out = np.empty(len(ids), dtype=object)
        out[:] = list(ids)
        return out


def _mux_selector(values: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    """The multiplexer id cantools would use: ``int(value)`` (truncation toward zero)."""
    if values.dtype.kind == "f":
        finite: npt.NDArray[np.float64] = np.nan_to_num(
            values.astype(np.float64), nan=-1.5, posinf=-1.5, neginf=-1.5
        )
        return np.trunc(finite)
    return values


class BatchDecoder:
    """Decodes whole batches against one :class:`ChargerDatabase` (plans compiled once)."""

    def __init__(self, db: ChargerDatabase) -> None:
        self.db = db
        self._plans = [_MessagePlan(m) for m in db.messages]
        self._lengths = np.array([m.length for m in db.messages] or [0], np.int64)
        self._sort_dtype = np.int16 if len(db.messages) < 32_000 else np.int32
        self._uses_big = any(p.is_classic and p.words.uses_big for p in self._plans)
        self._exchanges = any(m.direction or m.peer_mask or m.error_mask for m in db.messages)

    def decode(self, batch: FrameBatch) -> DecodeResult:
        data_frames = batch.is_data
        message, node = self.db.match(batch.can_id, batch.is_extended)
        message[~data_frames] = -1
        unknown = data_frames & (message < 0)
        known = np.flatnonzero(message >= 0)
        short = known[batch.dlc[known] < self._lengths[message[known]]]
        message[short] = -1
        result = DecodeResult(
            messages={},
            decoded_frames=0,
            unknown_ids=count_ids(batch.can_id[unknown], batch.is_extended[unknown]),
            short_frames=count_ids(batch.can_id[short], batch.is_extended[short]),
            error_frames=int(np.count_nonzero(batch.is_error)),
            remote_frames=int(np.count_nonzero(batch.is_remote)),
        )
        decodable = np.flatnonzero(message >= 0)
        if not decodable.size:
            return result
        # Group frames per message, keeping frame order inside each group (stable sort;
        # radix sort for the narrow dtype).
        groups = message[decodable].astype(self._sort_dtype)
        order = decodable[np.argsort(groups, kind="stable")]
        sorted_groups = message[order]
        starts = np.flatnonzero(np.diff(sorted_groups, prepend=-1))
        ends = np.append(starts[1:], order.size)
        # One gather per array for all messages; each message takes a slice of them.
        pair = _word_pair(_first_words(batch.data)[order], self._uses_big)
        timestamps = batch.timestamp[order]
        nodes = node[order]
        fields = (
            {
                name: self.db.field_of(name, message[order], batch.can_id[order])
                for name in ("peer_mask", "group_mask", "error_mask", "serial_mask")
            }
            if self._exchanges
            else {}
        )
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            plan = self._plans[int(sorted_groups[start])]
            index = order[start:end]
            if plan.is_classic:
                signals, present = plan.decode_pair(pair[:, start:end])
            else:
                width = min(batch.data.shape[1], plan.width)
                signals, present = plan.decode_payload(batch.data[index, :width])
            result.messages[plan.message.name] = DecodedMessage(
                message=plan.message,
                index=index,
                timestamp=timestamps[start:end],
                node=nodes[start:end],
                signals=signals,
                present=present,
                exchange=_exchange(plan.message, fields, start, end, signals, present)
                if fields
                else None,
            )
        result.decoded_frames = int(order.size)
        return result


def _exchange(
    message: MessageDef,
    fields: Mapping[str, npt.NDArray[np.int32]],
    start: int,
    end: int,
    signals: Mapping[str, npt.NDArray[np.generic]],
    present: Mapping[str, BoolArray],
) -> Exchange | None:
    """The identifier fields, direction, error and command of one message's frames."""
    if not (message.direction or message.peer_mask or message.error_mask):
        return None
    n = end - start
    peer = fields["peer_mask"][start:end]
    if not message.peer_mask and message.protocol is not None:
        peer = np.full(n, message.protocol.controller_address, np.int32)
    error = np.maximum(fields["error_mask"][start:end], 0).astype(np.int64)
    command = np.full(n, -1, np.int64)
    direction = np.full(n, DIRECTION_CODES.get(message.direction, DIRECTION_NONE), np.int8)
    for sig in message.signals:
        if sig.role == "reply_error" and sig.ok_value is not None:
            rows = present[sig.name] & (error == 0)
            value = np.asarray(signals[sig.name]).astype(np.int64)
            bad = rows & (value != sig.ok_value)
            error[bad] = value[bad]
        elif sig.role == "command":
            rows = present[sig.name] & (command < 0)
            command[rows] = np.asarray(signals[sig.name])[rows].astype(np.int64)
        elif sig.role == "direction" and message.direction == "both":
            value = np.asarray(signals[sig.name]).astype(np.int64)
            direction[:] = DIRECTION_UNKNOWN
            direction[np.isin(value, sig.request_values)] = DIRECTION_REQUEST
            direction[np.isin(value, sig.reply_values)] = DIRECTION_REPLY
    return Exchange(
        peer=peer,
        group=fields["group_mask"][start:end],
        error=error,
        serial=fields["serial_mask"][start:end],
        direction=direction,
        command=command,
    )


def _word_pair(words: U64, big: bool = True) -> U64:
    """``[words, words.byteswap()]`` as one (2, n) array (the second row only if ``big``)."""
    pair = np.empty((2, words.shape[0]), np.uint64)
    pair[0] = words
    if big:
        pair[1] = words.byteswap()
    return pair


def _first_words(data: U8) -> U64:
    """Bytes 0..7 of every row as a native uint64 holding their little-endian value."""
    rows = np.ascontiguousarray(data)
    if rows.shape[1] < 8:
        rows = np.pad(rows, ((0, 0), (0, 8 - rows.shape[1])))
    words = rows.view("<u8")[:, 0]
    return words.astype(np.uint64, copy=False)


def count_ids(
    ids: npt.NDArray[np.uint32], extended: npt.NDArray[np.bool_]
) -> collections.Counter[int]:
    """Frames per identifier; extended identifiers carry bit 31 (as cantools keys them), so
    an extended 0x285 stays apart from the standard 0x285 and is printed with 8 digits."""
    if not ids.size:
        return collections.Counter()
    keys = ids.astype(np.uint32) | (extended.astype(np.uint32) << np.uint32(31))
    values, counts = np.unique(keys, return_counts=True)
    return collections.Counter(dict(zip(values.tolist(), counts.tolist(), strict=True)))
