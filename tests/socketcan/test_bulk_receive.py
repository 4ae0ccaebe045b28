"""The bulk receive path (``recvmmsg``, candiag.ingest.socketcan_bulk) on real SocketCAN.

Three readers of the same traffic on vcan0: candiag's bulk receiver, python-can's own
``recv`` (through ``BatchBuilder``, the per-message path) and can-utils' ``candump -L``.
vcan hands one skb to every socket, so all three must agree frame for frame, flag for
flag and, for the two python readers, on the kernel timestamp to the nanosecond.  Then
the kernel's socket-overflow counter (``SO_RXQ_OVFL``): a socket with a small receive
buffer, more frames sent than fit, dropped == sent - received, and the same count through
the daemon's reader as ``dropped{source="socket"}``.  Finally link loss on the bulk path.
"""

from __future__ import annotations

import shutil
import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import can
import numpy as np
import pytest

from candiag.capture import read_capture
from candiag.config.model import BusConfig
from candiag.ingest.frames import BatchBuilder, FrameBatch
from candiag.ingest.live import BusReader, open_listen_only_bus
from candiag.ingest.socketcan_bulk import BulkReceiver, bulk_receiver_for
from candiag.live.readers import open_reader
from tests.waiting import wait_for

from .vcanlib import (
    CAN_EFF_FLAG,
    CAN_RAW_FD_FRAMES,
    ERROR_CLASS_BITS,
    SO_RCVBUFFORCE,
    SOL_CAN_RAW,
    Frame,
    RawSocket,
    error_frame,
    link,
    start,
    stop,
)

CHANNEL = "vcan0"
SYNC_ID, END_ID = 0x7E0, 0x7E1
CANFD_FRAME = struct.Struct("=IBBBB64s")

CLASSIC: list[Frame] = [
    Frame(0x123, bytes([1, 2])),
    Frame(0x000, b""),
    Frame(0x7FF, bytes(range(8))),
    Frame(0x18FF50E5, b"\xde\xad\xbe\xef", extended=True),
    Frame(0x321, remote=True, dlc=4),
    Frame(0x1ABCDEF0, extended=True, remote=True, dlc=8),
    *(
        error_frame(bit, [3 if name == "lost_arbitration" else 0, 0x10, 0, 0, 0, 0, 7, 9])
        for name, bit in ERROR_CLASS_BITS.items()
    ),
    error_frame(0x008 | 0x080, [0, 0, 0x02, 0x0A, 0, 0, 97, 3]),
]
# (raw can_id, payload, FD flags): BRS, BRS+ESI, ESI, none.
FD: list[tuple[int, bytes, int]] = [
    (0x123, bytes(range(64)), 0x01),
    (0x18DA00F1 | CAN_EFF_FLAG, b"\xaa" * 12, 0x03),
    (0x456, b"\xbb" * 20, 0x02),
    (0x457, b"\xcc" * 8, 0x00),
]


@pytest.fixture
def fd_raw(vcan0: str) -> Iterator[socket.socket]:
    with socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW) as raw:
        raw.setsockopt(SOL_CAN_RAW, CAN_RAW_FD_FRAMES, 1)
        raw.bind((vcan0,))
        yield raw


def big_buffer(bus: can.BusABC) -> None:
    bus.socket.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)  # type: ignore[attr-defined]


def python_can_batch(bus: can.BusABC) -> FrameBatch:
    """Everything up to the END marker, through python-can's recv and BatchBuilder."""
    builder = BatchBuilder(default_channel=CHANNEL)
    while (msg := bus.recv(2.0)) is not None:
        builder.add(msg)
        if msg.arbitration_id == END_ID and not msg.is_error_frame:
            break
    return without_markers(builder.build())


def bulk_batch(rx: BulkReceiver, until_end: bool = True, quiet: float = 2.0) -> FrameBatch:
    """Everything up to the END marker (or until ``quiet`` s of silence), in bulk."""
    parts = []
    while got := rx.receive(0, quiet):
        part = rx.take(got)
        parts.append(part)
        if until_end and np.any(part.is_data & (part.can_id == END_ID)):
            break
    batch = FrameBatch.concat(parts) if parts else FrameBatch.empty(channels=[CHANNEL])
    return without_markers(batch) if until_end else batch


def without_markers(batch: FrameBatch) -> FrameBatch:
    return batch.take(~(batch.is_data & np.isin(batch.can_id, [SYNC_ID, END_ID])))


def send_until(raw: RawSocket, frame: Frame, seen: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not seen():
        assert time.monotonic() < deadline, f"{frame} never seen within {timeout} s"
        raw.send([frame])
        time.sleep(0.3)


def test_bulk_equals_python_can_and_candump(
    vcan0: str, fd_raw: socket.socket, tmp_path: Path
) -> None:
    candump, stdbuf = shutil.which("candump"), shutil.which("stdbuf")
    assert candump and stdbuf, "the VM needs can-utils and coreutils' stdbuf"
    dump_log = tmp_path / "candump.log"
    with (
        open_listen_only_bus("socketcan", vcan0, None, fd=True) as ours,
        can.Bus(interface="socketcan", channel=vcan0, fd=True, ignore_config=True) as theirs,
    ):
        big_buffer(ours)
        big_buffer(theirs)
        rx = bulk_receiver_for(ours, 4096)
        assert rx is not None, "a SocketCAN bus must be read in bulk"
        dump = start([stdbuf, "-oL", candump, "-L", f"{vcan0},0:0,#FFFFFFFF"], dump_log)
        try:
            with RawSocket(vcan0) as raw:
                marker = f"{SYNC_ID:03X}#"
                send_until(raw, Frame(SYNC_ID, b"\x01"), lambda: marker in _text(dump_log), 90)
                for i, frame in enumerate(CLASSIC):
                    raw.send([frame])
                    if i < len(FD):  # FD frames interleaved: a batch mixes both widths
                        can_id, data, flags = FD[i]
                        fd_raw.send(CANFD_FRAME.pack(can_id, len(data), flags, 0, 0, data))
                end = f"{END_ID:03X}#"
                send_until(raw, Frame(END_ID, b"\x02"), lambda: end in _text(dump_log), 30)
        finally:
            stop(dump)
        got = bulk_batch(rx)
        want = python_can_batch(theirs)
    n = len(CLASSIC) + len(FD)
    assert len(got) == len(want) == n
    for name in ("timestamp", "can_id", "flags", "dlc", "data", "channel"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name
    assert got.channels == want.channels == [vcan0]
    assert got.data.shape == (n, 64) and int(got.is_fd.sum()) == len(FD)
    assert int(got.is_error.sum()) == len(ERROR_CLASS_BITS) + 1
    assert rx.untimed_frames == rx.irregular_rows == rx.malformed_rows == rx.dropped == 0

    batch, stats = read_capture(dump_log)
    assert stats.malformed == 0, stats.summary()
    reference = without_markers(batch)
    assert len(reference) == n
    assert got.can_id.tolist() == reference.can_id.tolist()
    assert got.flags.tolist() == reference.flags.tolist()
    assert got.dlc.tolist() == reference.dlc.tolist()
    width = reference.data.shape[1]
    assert np.array_equal(got.data[:, :width], reference.data)
    assert not got.data[:, width:].any()
    # One skb for every socket: candump's microseconds are our nanoseconds, truncated.
    assert np.abs(got.timestamp - reference.timestamp).max() <= 1.5e-6


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def small_buffer(bus: can.BusABC) -> None:
    bus.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # type: ignore[attr-defined]


def test_socket_overflow_drops_are_counted(vcan0: str) -> None:
    sent = 500
    with open_listen_only_bus("socketcan", vcan0, None) as bus, RawSocket(vcan0) as raw:
        small_buffer(bus)
        rx = bulk_receiver_for(bus, 4096)
        assert rx is not None
        raw.send([Frame(0x100, i.to_bytes(2, "big")) for i in range(sent)])
        kept = bulk_batch(rx, until_end=False, quiet=0.5)
        assert 0 < len(kept) < sent, "the small buffer should have overflowed"
        # The frames that fitted are the first ones, in order; the rest was dropped.
        assert [bytes(d[:2]) for d in kept.data] == [i.to_bytes(2, "big") for i in range(len(kept))]
        assert rx.dropped == 0, "queued before the drops: they carry no count yet"
        raw.send([Frame(END_ID, b"\x02")])  # queued after the drops: carries the count
        after = bulk_batch(rx, until_end=False, quiet=1.0)
        assert after.can_id.tolist() == [END_ID]
        assert rx.dropped == sent - len(kept)


def test_the_daemons_reader_reports_socket_drops(vcan0: str) -> None:
    sent = 500
    bus = open_listen_only_bus("socketcan", vcan0, None)
    small_buffer(bus)
    config = BusConfig(name=vcan0, interface="socketcan", channel=vcan0)
    source = open_reader(config, bus_factory=lambda: bus)
    reader = source.reader
    with RawSocket(vcan0) as raw:
        raw.send([Frame(0x100, i.to_bytes(2, "big")) for i in range(sent)])  # overflows
        source.start()
        try:
            wait_for(
                lambda: reader.frames_received > 0, "first frames read", timeout=30.0, interval=0.05
            )
            time.sleep(1.0)  # the queue is read at once; nothing more is coming
            kept = reader.frames_received
            assert reader.receive_path == "bulk"
            raw.send([Frame(END_ID, b"\x02")])
            wait_for(
                lambda: reader.frames_received == kept + 1,
                "the marker read",
                timeout=30.0,
                interval=0.05,
            )
            assert reader.dropped_frames == sent - kept
            assert source.dropped["socket"] == sent - kept
            assert len(source.drain()) == kept + 1
        finally:
            source.stop()


def test_link_loss_on_the_bulk_path_is_reported_and_recovered(vcan0: str) -> None:
    reader = BusReader("socketcan", vcan0, backoff_min=0.1, backoff_max=0.5)
    with reader:
        wait_for(
            lambda: reader.up and reader.receive_path == "bulk",
            "reader up",
            timeout=30.0,
            interval=0.05,
        )
        with RawSocket(vcan0) as raw:
            send_until(raw, Frame(0x55, b"\x01"), lambda: reader.frames_received > 0, 30)
        link(vcan0, "down")
        wait_for(lambda: not reader.up, "bus down", timeout=30.0, interval=0.05)
        assert "is down" in reader.last_error, reader.last_error
        link(vcan0, "up")
        wait_for(
            lambda: reader.up and reader.reconnects >= 1, "bus back", timeout=30.0, interval=0.05
        )
        before = reader.frames_received
        with RawSocket(vcan0) as raw:  # a new socket: the old one holds the ENETDOWN
            send_until(raw, Frame(0x56, b"\x02"), lambda: reader.frames_received > before, 30)
        assert reader.receive_path == "bulk"
    assert not reader.running
    assert set(reader.drain().can_id.tolist()) == {0x55, 0x56}
