"""The vectorized decoder on known frames: reference DBCs, masks, error/remote/short/unknown frames."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from candiag.decode.dbc import (
    ChargerDatabase,
    SignalDef,
    load_dbc_paths,
    load_dbc_text,
    reference_dbc_dir,
)
from candiag.decode.decoder import BatchDecoder
from candiag.ingest.frames import FLAG_ERROR, FLAG_EXTENDED, FLAG_FD, FLAG_REMOTE, FrameBatch

sys.path.insert(0, str(Path(__file__).parent))
from test_decoder_random import compare_with_cantools

FIXTURE = Path(__file__).parent / "data" / "decode_fixture.dbc"


def make_batch(
    frames: Sequence[tuple[int, Any, Any]], width: int = 8, channel: str = "can0"
) -> FrameBatch:
    """Frames as (can_id, flags, payload bytes or remote DLC)."""
    n = len(frames)
    data = np.zeros((n, width), np.uint8)
    dlc = np.zeros(n, np.uint8)
    for i, (_, _, payload) in enumerate(frames):
        if isinstance(payload, int):
            dlc[i] = payload
        else:
            dlc[i] = len(payload)
            data[i, : len(payload)] = np.frombuffer(payload, np.uint8)
    return FrameBatch(
        timestamp=np.arange(n, dtype=np.float64) + 1_700_000_000.0,
        can_id=np.array([f[0] for f in frames], np.uint32),
        flags=np.array([f[1] for f in frames], np.uint8),
        dlc=dlc,
        data=data,
        channel=np.zeros(n, np.int16),
        channels=[channel],
    )


@pytest.fixture(scope="module")
def db() -> ChargerDatabase:
    return load_dbc_paths([FIXTURE])


def test_known_values_and_dtypes(db: ChargerDatabase) -> None:
    # OutputVoltage 0x1D5B BE = 7515 * 0.1; current -1234 LE * 0.01; temp 0x5A - 40
    payload = bytes([0x1D, 0x5B, 0x2E, 0xFB, 0x5A, 0x42, 0x01, 0x00])
    batch = make_batch([(0x08000007, FLAG_EXTENDED, payload)])
    result = BatchDecoder(db).decode(batch)
    pm = result.messages["PM_Status"]
    assert pm.signals["OutputVoltage"][0] == pytest.approx(751.5)
    assert pm.signals["OutputCurrent"][0] == pytest.approx(-12.34)
    assert pm.signals["Temperature"].dtype == np.int64 and pm.signals["Temperature"][0] == 50
    assert (pm.signals["FwMajor"][0], pm.signals["FwMinor"][0]) == (2, 4)
    assert pm.signals["OverTemp"][0] == 1
    assert pm.node.tolist() == [7]
    assert pm.timestamp.tolist() == [1_700_000_000.0]
    assert result.decoded_frames == 1


def test_masked_nodes_in_frame_order(db: ChargerDatabase) -> None:
    frames = [
        (0x08000001, FLAG_EXTENDED, bytes(8)),
        (0x40, 0, bytes([1, 2])),
        (0x080000FE, FLAG_EXTENDED, bytes(8)),
        (0x08000002, FLAG_EXTENDED, bytes(8)),
    ]
    result = BatchDecoder(db).decode(make_batch(frames))
    pm = result.messages["PM_Status"]
    assert pm.index.tolist() == [0, 2, 3]
    assert pm.node.tolist() == [1, 0xFE, 2]
    heartbeat = result.messages["Heartbeat"]
    assert heartbeat.node.tolist() == [-1]
    assert heartbeat.signals["HeartbeatCounter"].tolist() == [2]


def test_error_and_remote_frames_are_never_data(db: ChargerDatabase) -> None:
    frames = [
        (0x040, FLAG_ERROR, bytes(8)),  # bus-off error frame: class bits 0x040
        (0x040, 0, bytes([9, 3])),  # the Heartbeat message at 0x040
        (0x040, FLAG_REMOTE, 2),  # a remote request for it
        (0x100, FLAG_ERROR, bytes(8)),  # restarted: class 0x100, id of MeterRegister
        (0x08000003, FLAG_EXTENDED | FLAG_REMOTE, 8),
    ]
    result = BatchDecoder(db).decode(make_batch(frames))
    assert result.error_frames == 2
    assert result.remote_frames == 2
    assert result.decoded_frames == 1
    assert set(result.messages) == {"Heartbeat"}
    assert result.messages["Heartbeat"].index.tolist() == [1]
    assert result.messages["Heartbeat"].signals["Alive"].tolist() == [9]
    assert not result.unknown_ids and not result.short_frames


def test_short_long_and_unknown_frames_are_counted(db: ChargerDatabase) -> None:
    frames = [
        (0x40, 0, bytes([5])),  # Heartbeat needs 2 bytes
        (0x40, 0, bytes([5])),
        (0x40, 0, bytes([5, 1, 0xAA, 0xBB])),  # longer: decoded from the first 2 bytes
        (0x08000009, FLAG_EXTENDED, bytes(4)),  # short PM_Status of node 9
        (0x123, 0, bytes(8)),
        (0x123, 0, bytes(8)),
        (0x40, FLAG_EXTENDED, bytes(2)),  # extended 0x40 is not the standard Heartbeat
        (0x08000100, FLAG_EXTENDED, bytes(8)),  # outside PM_Status's node mask
    ]
    result = BatchDecoder(db).decode(make_batch(frames))
    # Extended identifiers are keyed with bit 31, as cantools keys them.
    assert result.short_frames == {0x40: 2, 0x88000009: 1}
    assert result.unknown_ids == {0x123: 2, 0x80000040: 1, 0x88000100: 1}
    assert result.decoded_frames == 1
    heartbeat = result.messages["Heartbeat"]
    assert heartbeat.index.tolist() == [2]
    assert heartbeat.signals["Alive"].tolist() == [5]


def test_multiplexed_presence(db: ChargerDatabase) -> None:
    frames = [
        (0x100, 0, bytes([1, 0x10, 0x27, 0, 0, 0, 0, 0])),  # Energy 10000 Wh
        (0x100, 0, bytes([2, 0xE2, 0x08, 0x0C, 0xFE, 0, 0, 0])),  # 227.4 V, -5.0 A
        (0x100, 0, bytes([7, 1, 2, 3, 4, 5, 6, 7])),  # no signals for register 7
    ]
    batch = make_batch(frames)
    result = BatchDecoder(db).decode(batch)
    meter = result.messages["MeterRegister"]
    assert meter.present["Energy"].tolist() == [True, False, False]
    assert meter.present["Voltage"].tolist() == [False, True, False]
    assert meter.present["Register"].tolist() == [True, True, True]
    assert meter.signals["Energy"][0] == 10000
    assert meter.signals["Voltage"][1] == pytest.approx(227.4)
    assert meter.signals["Current"][1] == pytest.approx(-5.0)
    compare_with_cantools(db, batch, result)


def test_floats_in_fd_frames(db: ChargerDatabase) -> None:
    single = np.array([-1.5], "<f4").tobytes()
    double = np.array([1234.25], ">f8").tobytes()  # Motorola, MSB at start bit 39 = byte 4
    payload = single + double
    batch = make_batch([(0x200, FLAG_FD, payload)], width=64)
    result = BatchDecoder(db).decode(batch)
    floats = result.messages["Floats"]
    assert floats.signals["Single"][0] == -1.5
    assert floats.signals["Double"][0] == 1234.25 * 2 - 1
    compare_with_cantools(db, batch, result)
    # The same message in a classic-width batch cannot be complete: counted short.
    classic = make_batch([(0x200, 0, payload[:8])])
    assert BatchDecoder(db).decode(classic).short_frames == {0x200: 1}


NESTED = """VERSION ""

NS_ :

BS_:

BU_:

BO_ 300 Nested: 8 Vector__XXX
 SG_ Top M : 0|4@1+ (1,0) [0|0] "" Vector__XXX
 SG_ Sub m1M : 8|8@1+ (1,0) [0|0] "" Vector__XXX
 SG_ Leaf1 m2 : 16|16@1+ (1,0) [0|0] "" Vector__XXX
 SG_ Leaf2 m3 : 16|8@1- (1,0) [0|0] "" Vector__XXX
 SG_ Other m0 : 8|32@1+ (1,0) [0|0] "" Vector__XXX

BO_ 301 Wide: 64 Vector__XXX
 SG_ WideLE : 3|64@1+ (1,0) [0|0] "" Vector__XXX
 SG_ WideBE : 443|64@0- (1,0) [0|0] "" Vector__XXX
 SG_ Huge : 100|64@1+ (7,3) [0|0] "" Vector__XXX
 SG_ Signed64 : 200|64@1- (-1,0) [0|0] "" Vector__XXX

SG_MUL_VAL_ 300 Sub Top 1-1;
SG_MUL_VAL_ 300 Leaf1 Sub 2-2;
SG_MUL_VAL_ 300 Leaf2 Sub 3-4;
SG_MUL_VAL_ 300 Other Top 0-0;
"""


def test_nested_multiplexing_matches_cantools() -> None:
    db = load_dbc_text(NESTED, "nested.dbc")
    frames = [
        (300, 0, bytes([1, 2, 5, 6, 0, 0, 0, 0])),
        (300, 0, bytes([1, 3, 0xF5, 6, 0, 0, 0, 0])),
        (300, 0, bytes([1, 4, 0x05, 6, 0, 0, 0, 0])),
        (300, 0, bytes([0, 3, 5, 6, 0, 0, 0, 0])),
        (300, 0, bytes([1, 9, 5, 6, 0, 0, 0, 0])),  # Sub 9: cantools refuses the frame
        (300, 0, bytes([2, 2, 5, 6, 0, 0, 0, 0])),  # Top 2 has no signals
    ]
    batch = make_batch(frames)
    result = BatchDecoder(db).decode(batch)
    nested = result.messages["Nested"]
    assert nested.present["Leaf1"].tolist() == [True, False, False, False, False, False]
    assert nested.present["Leaf2"].tolist() == [False, True, True, False, False, False]
    assert nested.present["Sub"].tolist() == [True, True, True, False, True, False]
    assert nested.present["Other"].tolist() == [False, False, False, True, False, False]
    assert nested.signals["Leaf2"][1] == -11
    compare_with_cantools(db, batch, result)


def test_64_bit_and_9_byte_signals_match_cantools() -> None:
    db = load_dbc_text(NESTED, "wide.dbc")
    rng = np.random.default_rng(7)
    frames = [(301, FLAG_FD, rng.integers(0, 256, 64, dtype=np.uint8).tobytes()) for _ in range(50)]
    frames.append((301, FLAG_FD, b"\xff" * 64))
    batch = make_batch(frames, width=64)
    result = BatchDecoder(db).decode(batch)
    wide = result.messages["Wide"]
    assert wide.signals["WideLE"].dtype == np.uint64
    assert wide.signals["WideBE"].dtype == np.int64
    assert wide.signals["Huge"].dtype == object  # 7 * 2**64: neither int64 nor uint64
    assert wide.signals["Signed64"].dtype == object  # -(-2**63) does not fit int64
    assert wide.signals["WideLE"][-1] == 2**64 - 1
    assert compare_with_cantools(db, batch, result) == 51 * 4


def test_empty_and_error_only_batches(db: ChargerDatabase) -> None:
    decoder = BatchDecoder(db)
    empty = decoder.decode(FrameBatch.empty())
    assert empty.decoded_frames == 0 and not empty.messages
    errors = decoder.decode(make_batch([(0x004, FLAG_ERROR, bytes(8))] * 3))
    assert errors.error_frames == 3 and errors.decoded_frames == 0 and not errors.unknown_ids


def test_reference_dbcs_with_random_payloads() -> None:
    folder = reference_dbc_dir()
    if not any(folder.glob("*.dbc")):
        pytest.skip("reference DBCs not written yet")
    db = load_dbc_paths([folder])
    rng = np.random.default_rng(2026)
    frames: list[tuple[int, Any, Any]] = []
    for _ in range(40):
        for msg in db.messages:
            can_id = msg.can_id_for(int(rng.integers(0, 4))) if msg.node_mask else msg.frame_id
            payload = bytearray(rng.integers(0, 256, msg.length, dtype=np.uint8).tobytes())
            mux = [s for s in msg.signals if s.is_multiplexer and s.multiplexer_signal is None]
            if mux and rng.random() < 0.9:
                ids = sorted({i for s in msg.signals for i in (s.multiplexer_ids or ())})
                set_signal(payload, mux[0], int(rng.choice(ids)))
            flags = (FLAG_EXTENDED if msg.is_extended else 0) | (FLAG_FD if msg.length > 8 else 0)
            frames.append((can_id, flags, bytes(payload)))
    width = 64 if any(m.length > 8 for m in db.messages) else 8
    batch = make_batch(frames, width=width)
    result = BatchDecoder(db).decode(batch)
    assert result.decoded_frames == len(frames)
    assert compare_with_cantools(db, batch, result) > len(frames)


def set_signal(payload: bytearray, sig: SignalDef, raw: int) -> None:
    """Write ``raw`` into the bits of ``sig`` (cantools' start-bit conventions)."""
    if sig.byte_order == "little_endian":
        bits = [((sig.start + i) // 8, (sig.start + i) % 8) for i in range(sig.length)]
    else:
        msb = 8 * (sig.start // 8) + 7 - sig.start % 8
        network = [msb + sig.length - 1 - i for i in range(sig.length)]
        bits = [(k // 8, 7 - k % 8) for k in network]
    for i, (byte, bit) in enumerate(bits):
        payload[byte] = (payload[byte] & ~(1 << bit) & 0xFF) | (((raw >> i) & 1) << bit)
