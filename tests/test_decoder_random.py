"""The vectorized decoder equals cantools, frame by frame, on random DBC layouts and payloads.

Hypothesis draws messages with random signals (byte order, signedness, length 1..64,
integer and fractional scale/offset, IEEE float32/float64, multiplexed groups) placed
without overlap, classic and FD lengths, and random payloads; every decoded value is
compared with ``cantools.decode_message(..., decode_choices=False)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cantools
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from candiag.decode.dbc import ChargerDatabase, load_dbc_text
from candiag.decode.decoder import BatchDecoder, DecodedMessage, DecodeResult
from candiag.ingest.frames import FLAG_EXTENDED, FLAG_FD, FrameBatch

SCALINGS = [
    ("1", "0"),
    ("1", "-40"),
    ("2", "0"),
    ("-3", "7"),
    ("10", "1000"),
    ("0.1", "0"),
    ("0.001", "-500"),
    ("2.5", "0.25"),
    ("1", "0.5"),
    ("3", "-0.75"),
    ("2.0", "4.0"),
]
LENGTHS = [1, 2, 3, 4, 5, 6, 7, 8, 8, 8, 12, 16, 24, 32, 48, 64]


@dataclass
class SignalSpec:
    name: str
    bits: list[tuple[int, int]]  # physical (byte, bit) positions, least significant first
    line: str
    float_type: int = 0  # 0 integer, 1 float32, 2 float64


@dataclass
class MessageSpec:
    name: str
    frame_id: int
    extended: bool
    length: int
    signals: list[SignalSpec] = field(default_factory=list)
    mux: SignalSpec | None = None
    mux_ids: list[int] = field(default_factory=list)

    @property
    def dbc_id(self) -> int:
        return self.frame_id | (0x80000000 if self.extended else 0)


def place_signal(
    draw: st.DrawFn, name: str, length: int, occupied: set[tuple[int, int]], mux_tag: str = ""
) -> SignalSpec | None:
    kind = draw(st.sampled_from(["int", "int", "int", "float32", "float64"]))
    total = 8 * length
    if kind == "int":
        wide = st.integers(56, 64)  # 64-bit and 9-byte-spanning signals need a push
        n = min(total, draw(st.one_of(st.integers(1, 16), st.integers(1, 64), wide)))
    else:
        n = 32 if kind == "float32" else 64
        if n > total:
            return None
    little = draw(st.booleans())
    first = draw(st.integers(0, total - n))  # LE: LSB bit; BE: network bit of the MSB
    if little:
        bits = [((first + i) // 8, (first + i) % 8) for i in range(n)]
        start = first
    else:
        network = [first + n - 1 - i for i in range(n)]  # LSB first
        bits = [(k // 8, 7 - k % 8) for k in network]
        start = 8 * (first // 8) + 7 - first % 8
    if occupied.intersection(bits):
        return None
    occupied.update(bits)
    signed = "-" if kind != "int" or draw(st.booleans()) else "+"
    scale, offset = draw(st.sampled_from(SCALINGS))
    order = 1 if little else 0
    tag = f" {mux_tag}" if mux_tag else ""
    line = f' SG_ {name}{tag} : {start}|{n}@{order}{signed} ({scale},{offset}) [0|0] "" Vector__XXX'
    float_type = {"int": 0, "float32": 1, "float64": 2}[kind]
    return SignalSpec(name, bits, line, float_type)


@st.composite
def message_specs(draw: st.DrawFn, index: int, used_ids: set[tuple[bool, int]]) -> MessageSpec:
    extended = draw(st.booleans())
    frame_id = draw(st.integers(0, 0x1FFFFFFF if extended else 0x7FF))
    if (extended, frame_id) in used_ids or (not extended and frame_id == 0):
        frame_id = 0x700 + index  # unique standard fallback
        extended = False
    used_ids.add((extended, frame_id))
    length = draw(st.sampled_from(LENGTHS))
    spec = MessageSpec(f"Msg{index}", frame_id, extended, length)
    occupied: set[tuple[int, int]] = set()
    if length >= 2 and draw(st.booleans()):
        mux_bits = draw(st.integers(2, 8))
        little = draw(st.booleans())
        first = draw(st.integers(0, 8 * length - mux_bits))
        if little:
            bits = [((first + i) // 8, (first + i) % 8) for i in range(mux_bits)]
            start = first
        else:
            bits = [
                ((k // 8), 7 - k % 8) for k in (first + mux_bits - 1 - i for i in range(mux_bits))
            ]
            start = 8 * (first // 8) + 7 - first % 8
        occupied.update(bits)
        line = f' SG_ Mux{index} M : {start}|{mux_bits}@{int(little)}+ (1,0) [0|0] "" Vector__XXX'
        spec.mux = SignalSpec(f"Mux{index}", bits, line)
        spec.mux_ids = sorted(
            draw(st.sets(st.integers(0, (1 << mux_bits) - 1), min_size=1, max_size=3))
        )
    for k in range(draw(st.integers(0 if spec.mux else 1, 4))):
        sig = place_signal(draw, f"S{index}_{k}", length, occupied)
        if sig:
            spec.signals.append(sig)
    for mux_id in spec.mux_ids:
        group = set(occupied)
        for k in range(draw(st.integers(1, 3))):
            sig = place_signal(draw, f"S{index}_m{mux_id}_{k}", length, group, f"m{mux_id}")
            if sig:
                spec.signals.append(sig)
    return spec


def dbc_text(specs: list[MessageSpec]) -> str:
    lines = ['VERSION ""', "", "NS_ :", "", "BS_:", "", "BU_:", ""]
    valtypes = []
    for spec in specs:
        lines.append(f"BO_ {spec.dbc_id} {spec.name}: {spec.length} Vector__XXX")
        if spec.mux:
            lines.append(spec.mux.line)
        for sig in spec.signals:
            lines.append(sig.line)
            if sig.float_type:
                valtypes.append(f"SIG_VALTYPE_ {spec.dbc_id} {sig.name} : {sig.float_type};")
        lines.append("")
    return "\n".join(lines + valtypes) + "\n"


def set_bits(payload: np.ndarray, bits: list[tuple[int, int]], value: int) -> None:
    for i, (byte, bit) in enumerate(bits):
        if (value >> i) & 1:
            payload[byte] |= 1 << bit
        else:
            payload[byte] &= ~(1 << bit) & 0xFF


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[MessageSpec], FrameBatch]:
    used: set[tuple[bool, int]] = set()
    specs = [draw(message_specs(i, used)) for i in range(draw(st.integers(1, 3)))]
    n = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 64), dtype=np.uint8)
    choice = rng.integers(0, len(specs), n)
    can_id = np.array([specs[c].frame_id for c in choice], np.uint32)
    flags = np.array([FLAG_EXTENDED if specs[c].extended else 0 for c in choice], np.uint8)
    dlc = np.array([specs[c].length for c in choice], np.uint8)
    for row, c in enumerate(choice):
        spec = specs[c]
        if spec.length < 8 and rng.random() < 0.2:
            dlc[row] = rng.integers(spec.length, 9)  # longer payload: first bytes decode
        if spec.mux and rng.random() < 0.85:
            set_bits(data[row], spec.mux.bits, int(rng.choice(spec.mux_ids)))
        if rng.random() < 0.1:
            data[row, : spec.length] = 0xFF if rng.random() < 0.5 else 0x00
    flags[dlc > 8] |= FLAG_FD
    for row in range(n):
        data[row, dlc[row] :] = 0
    batch = FrameBatch(
        timestamp=np.arange(n, dtype=np.float64) * 0.001,
        can_id=can_id,
        flags=flags,
        dlc=dlc,
        data=data,
        channel=np.zeros(n, np.int16),
        channels=["can0"],
    )
    return specs, batch


def assert_same_value(got: object, want: object, where: str) -> None:
    if isinstance(want, int):
        assert int(got) == want, f"{where}: {got!r} != {want!r}"  # type: ignore[call-overload]
        assert not isinstance(got, float | np.floating), f"{where}: int expected, got {got!r}"
        return
    assert isinstance(want, float)
    got_f = float(got)  # type: ignore[arg-type]
    if math.isnan(want):
        assert math.isnan(got_f), f"{where}: {got_f!r} != nan"
    else:
        assert math.isclose(got_f, want, rel_tol=1e-9, abs_tol=1e-300) or got_f == want, (
            f"{where}: {got_f!r} != {want!r}"
        )


def check_refused_frame(decoded: DecodedMessage, k: int) -> None:
    """cantools refuses a frame whose multiplexer value selects no signals; candiag keeps
    what is valid: a multiplexed signal is present iff its multiplexer is present and holds
    one of its ids.  The refusal must be explained by such an unselected value."""
    msg = decoded.message
    selected: dict[str, set[int]] = {}
    for sig in msg.signals:
        if sig.multiplexer_signal is None:
            continue
        parent = sig.multiplexer_signal
        ids = set(sig.multiplexer_ids or ())
        selected.setdefault(parent, set()).update(ids)
        selector = int(decoded.signals[parent][k])
        expected = bool(decoded.present[parent][k]) and selector in ids
        assert bool(decoded.present[sig.name][k]) == expected, f"{msg.name}.{sig.name}[{k}]"
    assert any(
        decoded.present[mux][k] and int(decoded.signals[mux][k]) not in ids
        for mux, ids in selected.items()
    ), f"{msg.name}[{k}]: cantools refused a frame candiag considers valid"


def compare_with_cantools(db: ChargerDatabase, batch: FrameBatch, result: DecodeResult) -> int:
    checked = 0
    seen = 0
    for decoded in result.messages.values():
        msg = decoded.message
        assert np.all(np.diff(decoded.index) > 0), "frames must stay in capture order"
        for k, row in enumerate(decoded.index.tolist()):
            seen += 1
            data = bytes(batch.data[row, : batch.dlc[row]])
            try:
                want: dict[str, Any] = db.cantools_db.decode_message(  # type: ignore[assignment]
                    msg.frame_id, data, decode_choices=False, force_extended_id=msg.is_extended
                )
            except cantools.database.DecodeError:
                check_refused_frame(decoded, k)
                continue
            got_names = {s.name for s in msg.signals if decoded.present[s.name][k]}
            assert got_names == set(want), f"{msg.name} frame {row}: signals differ"
            for name, value in want.items():
                assert_same_value(decoded.signals[name][k], value, f"{msg.name}.{name}[{row}]")
                checked += 1
    assert seen == result.decoded_frames
    return checked


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@pytest.mark.slow
@given(cases())
def test_random_layouts_match_cantools(case: tuple[list[MessageSpec], FrameBatch]) -> None:
    specs, batch = case
    db = load_dbc_text(dbc_text(specs), "random.dbc")
    result = BatchDecoder(db).decode(batch)
    assert result.decoded_frames == len(batch)  # every frame is long enough, every id known
    assert not result.unknown_ids and not result.short_frames
    compare_with_cantools(db, batch, result)
