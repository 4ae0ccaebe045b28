"""python-can's ``socketcan`` interface on a real kernel socket, witnessed by raw sockets.

Proves the receive path users run on a charger controller: data, extended,
remote and error frames written by another socket reach python-can, keep their
identifiers, flags and payloads, and land in a :class:`FrameBatch` with
candiag's conventions (error class bits in ``can_id``, ``FLAG_ERROR``).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import can
import numpy as np
import pytest
from frame_batches import batch_of

from candiag.capture.formats.candump import format_candump, parse_candump
from candiag.health.errorframes import ErrorFrameSummary
from candiag.ingest.frames import FLAG_ERROR, FLAG_EXTENDED, FLAG_REMOTE

from .vcanlib import (
    CAN_EFF_FLAG,
    CAN_ERR_MASK,
    CAN_RAW_FD_FRAMES,
    ERROR_CLASS_BITS,
    SOL_CAN_RAW,
    Frame,
    RawSocket,
    error_frame,
    link,
)

TRAFFIC = [
    Frame(0x123, bytes([1, 2])),
    Frame(0x000, b""),
    Frame(0x7FF, bytes(range(8))),
    Frame(0x18FF50E5, bytes([0xDE, 0xAD, 0xBE, 0xEF]), extended=True),
    Frame(0x0000_0001, b"\x01", extended=True),
    Frame(0x321, remote=True, dlc=4),
    Frame(0x1ABCDEF0, extended=True, remote=True, dlc=8),
]


@pytest.fixture
def bus(vcan0: str) -> Iterator[can.BusABC]:
    with can.Bus(interface="socketcan", channel=vcan0, ignore_config=True) as b:
        yield b


def receive(bus: can.BusABC, n: int, timeout: float = 2.0) -> list[can.Message]:
    out: list[can.Message] = []
    while len(out) < n:
        msg = bus.recv(timeout)
        if msg is None:
            break
        out.append(msg)
    return out


def as_frame(msg: can.Message) -> Frame:
    if msg.is_error_frame:
        return Frame(msg.arbitration_id, bytes(msg.data), error=True)
    if msg.is_remote_frame:
        return Frame(msg.arbitration_id, extended=msg.is_extended_id, remote=True, dlc=msg.dlc)
    return Frame(msg.arbitration_id, bytes(msg.data), extended=msg.is_extended_id)


def test_data_and_remote_frames_arrive_unchanged(vcan0: str, bus: can.BusABC) -> None:
    with RawSocket(vcan0) as raw:
        raw.send(TRAFFIC)
    msgs = receive(bus, len(TRAFFIC))
    assert [as_frame(m) for m in msgs] == TRAFFIC
    assert bus.recv(0.2) is None, "more frames than were sent"


def test_batch_keeps_flags_and_ids(vcan0: str, bus: can.BusABC) -> None:
    frames = [*TRAFFIC, error_frame(0x044, [0, 0x20, 0, 0, 0, 0, 0x80, 0x10])]
    with RawSocket(vcan0) as raw:
        raw.send(frames)
    batch = batch_of(receive(bus, len(frames)), default_channel=vcan0)
    assert len(batch) == len(frames)
    assert batch.can_id.tolist() == [f.can_id for f in frames]
    assert batch.is_extended.tolist() == [f.extended for f in frames]
    assert batch.is_remote.tolist() == [f.remote for f in frames]
    assert batch.is_error.tolist() == [f.error for f in frames]
    assert batch.dlc.tolist() == [f.length for f in frames]
    assert batch.flags[-1] == FLAG_ERROR
    assert not (batch.flags[:-1] & FLAG_ERROR).any()
    assert batch.flags[3] == FLAG_EXTENDED and batch.flags[5] == FLAG_REMOTE
    assert bytes(batch.data[3, :4]) == bytes([0xDE, 0xAD, 0xBE, 0xEF])
    assert np.all(np.diff(batch.timestamp) >= 0), "kernel timestamps go backwards"


def test_every_error_class_is_received_with_its_bits(vcan0: str, bus: can.BusABC) -> None:
    """vcan delivers a frame written with CAN_ERR_FLAG to sockets with CAN_RAW_ERR_FILTER."""
    frames = [
        error_frame(bit, [i, 0x04 if name == "controller" else 0, 0, 0, 0, 0, 7, 9])
        for i, (name, bit) in enumerate(ERROR_CLASS_BITS.items())
    ]
    frames.append(error_frame(0x008 | 0x080 | 0x200, [0, 0, 0x02, 0x0A, 0, 0, 97, 3]))
    with RawSocket(vcan0) as raw:
        raw.send(frames)
    msgs = receive(bus, len(frames))
    assert all(m.is_error_frame for m in msgs)
    assert [as_frame(m) for m in msgs] == frames

    summary = ErrorFrameSummary()
    summary.update(batch_of(msgs, default_channel=vcan0))
    expected = dict.fromkeys(ERROR_CLASS_BITS, 1)
    for name in ("protocol", "bus_error", "counters"):
        expected[name] += 1
    expected["unclassified"] = 0  # a kernel error frame always carries its class bits
    assert summary.error_frames == len(frames)
    assert summary.by_class == expected
    assert summary.tec_last == 97 and summary.rec_last == 3
    json = summary.to_json()
    assert json["protocol_type"] == {"form": 1, "unspec": 1}
    assert json["protocol_location"] == {"unspec": 1, "data": 1}
    assert json["controller"] == {"rx_warning": 1}
    assert json["lost_arbitration_bits"] == {"1": 1}


def test_error_frames_need_the_error_filter(vcan0: str) -> None:
    """Without CAN_RAW_ERR_FILTER the kernel delivers no error frames (why candump needs #mask)."""
    frames = [Frame(0x100, b"\x01"), error_frame(0x040), Frame(0x101, b"\x02")]
    with (
        RawSocket(vcan0) as plain,
        RawSocket(vcan0, err_mask=CAN_ERR_MASK) as subscribed,
        can.Bus(
            interface="socketcan", channel=vcan0, ignore_rx_error_frames=True, ignore_config=True
        ) as deaf,
        RawSocket(vcan0) as sender,
    ):
        sender.send(frames)
        assert plain.receive(0.3) == [frames[0], frames[2]]
        assert subscribed.receive(0.3) == frames
        assert [as_frame(m) for m in receive(deaf, 3, timeout=0.3)] == [frames[0], frames[2]]


def test_listening_bus_transmits_nothing(vcan0: str, bus: can.BusABC) -> None:
    """Opening and reading with python-can puts no frame on the bus (a witness sees none)."""
    with RawSocket(vcan0, err_mask=CAN_ERR_MASK) as witness, RawSocket(vcan0) as sender:
        sender.send([Frame(0x222, b"\x01\x02\x03")])
        assert receive(bus, 1)[0].arbitration_id == 0x222
        assert witness.receive(0.5) == [Frame(0x222, b"\x01\x02\x03")]


def test_link_down_is_reported_once_and_the_socket_recovers(vcan0: str) -> None:
    """What a reader must cope with: ENETDOWN once per down (also when opened while down)."""
    with can.Bus(interface="socketcan", channel=vcan0, ignore_config=True) as bus:
        link(vcan0, "down")
        with pytest.raises(can.CanOperationError, match="Network is down"):
            bus.recv(0.5)
        assert bus.recv(0.3) is None  # the error is reported once, then silence
        with can.Bus(interface="socketcan", channel=vcan0, ignore_config=True) as late:
            with pytest.raises(can.CanOperationError, match="Network is down"):
                late.recv(0.5)  # binding to a down interface succeeds; the first recv fails
            link(vcan0, "up")
            with RawSocket(vcan0) as raw:
                raw.send([Frame(0x55, b"\x01")])
            assert [as_frame(m) for m in receive(late, 1)] == [Frame(0x55, b"\x01")]
        assert [as_frame(m) for m in receive(bus, 1)] == [Frame(0x55, b"\x01")]


def test_fd_frames_arrive_with_brs_and_survive_candump_text(vcan0: str) -> None:
    """CAN FD on vcan (MTU 72): 64-byte payloads, BRS/ESI flags, and our candump ``##`` lines."""
    fd_frame = struct.Struct("=IBBBB64s")  # struct canfd_frame
    payloads = [(0x123, bytes(range(64)), 0x01), (0x18DA00F1 | CAN_EFF_FLAG, b"\xaa" * 12, 0x03)]
    with (
        can.Bus(interface="socketcan", channel=vcan0, fd=True, ignore_config=True) as bus,
        socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW) as raw,
    ):
        raw.setsockopt(SOL_CAN_RAW, CAN_RAW_FD_FRAMES, 1)
        raw.bind((vcan0,))
        for can_id, data, flags in payloads:
            raw.send(fd_frame.pack(can_id, len(data), flags, 0, 0, data))
        msgs = receive(bus, len(payloads))
    assert [(m.arbitration_id, bytes(m.data), m.is_fd, m.bitrate_switch) for m in msgs] == [
        (0x123, bytes(range(64)), True, True),
        (0x18DA00F1, b"\xaa" * 12, True, True),
    ]
    assert msgs[1].error_state_indicator and not msgs[0].error_state_indicator
    batch = batch_of(msgs, default_channel=vcan0)
    assert batch.data.shape == (2, 64) and batch.is_fd.all()
    assert batch.dlc.tolist() == [64, 12]
    text = format_candump(batch)
    assert b"##" in text
    back = parse_candump(text).batch
    assert back.can_id.tolist() == batch.can_id.tolist()
    assert back.flags.tolist() == batch.flags.tolist()
    assert np.array_equal(back.data, batch.data)
