"""Exact bus load: vectorized bit counts against a bit-by-bit reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from candiag.health.busload import CRC15_POLY, fd_bits, frame_bits, load_ratio
from candiag.ingest.frames import (
    FLAG_BRS,
    FLAG_ERROR,
    FLAG_EXTENDED,
    FLAG_FD,
    FLAG_REMOTE,
    FrameBatch,
)
from tests.can_bitstream import frame_bits_reference, reference_bitstream

Frame = tuple[int, bool, bool, int, bytes]  # id, extended, remote, dlc, payload


def _batch(rows: list[Frame]) -> FrameBatch:
    n = len(rows)
    data = np.zeros((n, 8), np.uint8)
    flags = np.zeros(n, np.uint8)
    for i, (_, ext, rtr, _, payload) in enumerate(rows):
        data[i, : len(payload)] = np.frombuffer(payload, np.uint8)
        flags[i] = (FLAG_EXTENDED if ext else 0) | (FLAG_REMOTE if rtr else 0)
    return FrameBatch(
        timestamp=np.arange(n, dtype=np.float64),
        can_id=np.array([r[0] for r in rows], np.uint32),
        flags=flags,
        dlc=np.array([r[3] for r in rows], np.uint8),
        data=data,
        channel=np.zeros(n, np.int16),
        channels=["can0"],
    )


def _reference(rows: list[Frame]) -> list[int]:
    return [
        frame_bits_reference(i, extended=e, remote=r, dlc=d, data=p)[0] for i, e, r, d, p in rows
    ]


@st.composite
def classic_frame(draw: st.DrawFn) -> Frame:
    extended = draw(st.booleans())
    can_id = draw(st.integers(0, 0x1FFFFFFF if extended else 0x7FF))
    remote = draw(st.booleans())
    dlc = draw(st.integers(0, 8))
    fill = draw(st.sampled_from(["random", "zeros", "ones"]))
    if remote:
        payload = b""
    elif fill == "zeros":
        payload = bytes(dlc)
    elif fill == "ones":
        payload = b"\xff" * dlc
    else:
        payload = draw(st.binary(min_size=dlc, max_size=dlc))
    return can_id, extended, remote, dlc, payload


@settings(max_examples=60, deadline=None)
@given(st.lists(classic_frame(), min_size=1, max_size=40))
def test_vectorized_equals_reference(rows: list[Frame]) -> None:
    nominal, data_phase = frame_bits(_batch(rows))
    assert nominal.tolist() == _reference(rows)
    assert not data_phase.any()


def test_reference_equals_vectorized_on_many_random_frames() -> None:
    rng = np.random.default_rng(7)
    rows: list[Frame] = []
    for _ in range(3000):
        ext = bool(rng.integers(2))
        dlc = int(rng.integers(9))
        remote = rng.random() < 0.1
        payload = b"" if remote else bytes(rng.integers(0, 256, dlc, dtype=np.uint8))
        rows.append((int(rng.integers(1 << (29 if ext else 11))), ext, remote, dlc, payload))
    assert frame_bits(_batch(rows))[0].tolist() == _reference(rows)


@settings(max_examples=100, deadline=None)
@given(classic_frame())
def test_reference_bitstream_is_valid_can(frame: Frame) -> None:
    can_id, ext, remote, dlc, payload = frame
    bits, wire = reference_bitstream(can_id, extended=ext, remote=remote, dlc=dlc, data=payload)
    # CRC-15 over message + CRC is zero (the receiver's check).
    crc = 0
    for bit in bits:
        feedback = bit ^ ((crc >> 14) & 1)
        crc = ((crc << 1) & 0x7FFF) ^ (CRC15_POLY if feedback else 0)
    assert crc == 0
    # No six equal bits on the wire, and de-stuffing gives back the frame.
    assert "000000" not in "".join(map(str, wire)) and "111111" not in "".join(map(str, wire))
    destuffed, run, last, skip = [], 0, -1, False
    for bit in wire:
        if skip:
            skip, last, run = False, bit, 1
            continue
        destuffed.append(bit)
        run = run + 1 if bit == last else 1
        last = bit
        skip = run == 5
    assert destuffed == bits
    base = (47 if not ext else 67) + (0 if remote else 8 * dlc)
    assert frame_bits_reference(can_id, extended=ext, remote=remote, dlc=dlc, data=payload)[
        0
    ] == base + (len(wire) - len(bits))


def test_stuffing_corner_cases() -> None:
    rows: list[Frame] = [
        (0x000, False, False, 0, b""),
        (0x7FF, False, False, 0, b""),
        (0x000, False, False, 8, bytes(8)),
        (0x7FF, False, False, 8, b"\xff" * 8),
        (0x00000000, True, False, 8, bytes(8)),
        (0x1FFFFFFF, True, False, 8, b"\xff" * 8),
        (0x7FF, False, True, 8, b""),
    ]
    got = frame_bits(_batch(rows))[0].tolist()
    assert got == _reference(rows)
    # 0x000 with DLC 0: SOF + 11 zeros + RTR/IDE/r0 + DLC 0000 = 19 zeros, stuffed every 4
    # after the first 5; heavy stuffing in any case.
    assert got[0] >= 47 + 4
    assert got[2] > 111 + 12  # all-zero payload stuffs at least once per 4 bits of data
    # Remote frames carry no data bits, whatever their DLC (unlike canbusload's count).
    assert got[6] < 47 + 8


def _crccheck_crc15(message_bits: list[int]) -> int:
    """CRC-15/CAN by crccheck (a cantools dependency): an independent implementation.

    Leading zero bits leave a zero-initialised CRC unchanged, so the bitstream is left-padded
    to whole bytes.
    """
    crccheck = pytest.importorskip("crccheck.crc")
    bits = [0] * (-len(message_bits) % 8) + message_bits
    data = bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))
    return int(crccheck.Crc15Can.calc(data))


@settings(max_examples=50, deadline=None)
@given(classic_frame())
def test_crc_agrees_with_crccheck(frame: Frame) -> None:
    can_id, ext, remote, dlc, payload = frame
    bits, _ = reference_bitstream(can_id, extended=ext, remote=remote, dlc=dlc, data=payload)
    crc = int("".join(map(str, bits[-15:])), 2)
    assert crc == _crccheck_crc15(bits[:-15])


def test_known_value_without_stuffing() -> None:
    # 0x2AA with 0x55 payload: no five equal bits anywhere, CRC 0x251C (crccheck agrees),
    # so the frame is exactly the base SFF n=8 length: 47 + 64 = 111 bits.
    bits, wire = reference_bitstream(0x2AA, extended=False, dlc=8, data=b"\x55" * 8)
    assert int("".join(map(str, bits[-15:])), 2) == 0x251C == _crccheck_crc15(bits[:-15])
    assert wire == bits
    assert frame_bits(_batch([(0x2AA, False, False, 8, b"\x55" * 8)]))[0].tolist() == [111]
    # The same payload under a 29-bit id 0: SOF + 11 zero id bits stuff; base is 131.
    eff = frame_bits(_batch([(0, True, False, 8, b"\x55" * 8)]))[0][0]
    assert eff > 131


def test_error_frames_count_zero_and_fd_formula() -> None:
    batch = _batch([(0x100, False, False, 8, bytes(8))] * 4)
    batch.flags[1] = FLAG_ERROR
    batch.flags[2] = FLAG_FD | FLAG_EXTENDED
    batch.flags[3] = FLAG_FD | FLAG_BRS
    nominal, data_phase = frame_bits(batch)
    assert nominal[1] == 0 and data_phase[1] == 0
    # canbusload FD, 8 bytes, 29-bit, no BRS: 1 + 29 + 17 + 5 + 12 + 64
    assert (nominal[2], data_phase[2]) == (128, 0)
    # 11-bit with BRS: total 110, data phase 1 + 1 + 4 + 17 + 64 = 87 at the data bitrate
    assert (nominal[3], data_phase[3]) == (110 - 87, 87)
    n64, d64 = fd_bits([64], [False], [True])
    assert (int(n64[0]) + int(d64[0]), int(d64[0])) == (1 + 11 + 21 + 5 + 12 + 512, 539)


def test_load_ratio() -> None:
    # 4000 frames of 125 bits in one second at 500 kbit/s: exactly full.
    assert load_ratio(np.full(4000, 125), 500_000) == pytest.approx(1.0)
    assert load_ratio((1000, 2000), 500_000, 2_000_000, seconds=2.0) == pytest.approx(
        (1000 / 500_000 + 2000 / 2_000_000) / 2
    )
    with pytest.raises(ValueError):
        load_ratio(10, 0)


def test_fd_batch_of_width_64_mixes_classic_and_fd() -> None:
    rows: list[Frame] = [
        (0x123, False, False, 8, bytes(range(8))),
        (0x1ABCDE, True, False, 3, b"abc"),
    ]
    classic = _batch(rows)
    wide = FrameBatch(
        timestamp=np.arange(3, dtype=np.float64),
        can_id=np.array([0x123, 0x1ABCDE, 0x10], np.uint32),
        flags=np.array([0, FLAG_EXTENDED, FLAG_FD | FLAG_BRS], np.uint8),
        dlc=np.array([8, 3, 64], np.uint8),
        data=np.zeros((3, 64), np.uint8),
        channel=np.zeros(3, np.int16),
        channels=["can0"],
    )
    wide.data[:2, :8] = classic.data
    wide.data[2] = 0xFF
    nominal, data_phase = frame_bits(wide)
    assert nominal[:2].tolist() == frame_bits(classic)[0].tolist() == _reference(rows)
    fd_nominal, fd_data = fd_bits([64], [False], [True])
    assert (nominal[2], data_phase[2]) == (fd_nominal[0], fd_data[0])
    # 1 s of this at 500 kbit/s nominal and 2 Mbit/s data phase.
    ratio = load_ratio((nominal, data_phase), 500_000, 2_000_000)
    assert ratio == pytest.approx(nominal.sum() / 500_000 + data_phase.sum() / 2_000_000)
