"""The bulk SocketCAN receive path on this host: ``recvmmsg`` + numpy against python-can.

This kernel has no ``AF_CAN``, so the frames travel over an ``AF_UNIX`` datagram
socketpair as hand-built ``struct can_frame``/``canfd_frame`` bytes: one datagram per
frame, exactly what a ``CAN_RAW`` socket returns.  python-can's own ``capture_message``
reads the same bytes from a twin socketpair, and ``BatchBuilder`` turns its ``Message``
objects into the reference batch.

Timestamps: this kernel does attach ``SO_TIMESTAMPNS`` control messages to ``AF_UNIX``
datagrams (checked below), taken when the datagram is queued.  The two socketpairs get
separate datagrams, so their timestamps are close, not equal; equality to the
nanosecond with python-can (and candump) is proven on real SocketCAN in the microVM
(``tests/socketcan/test_bulk_receive.py``), where one skb reaches both sockets.
"""

from __future__ import annotations

import ctypes
import logging
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import can
import numpy as np
import pytest
from can.interfaces.socketcan.socketcan import capture_message
from frame_batches import batch_of

from candiag.ingest import socketcan_bulk as sb
from candiag.ingest.frames import BatchBuilder, FrameBatch
from candiag.ingest.live import BusReader
from candiag.live.readers import ReaderSource
from tests.waiting import wait_for

CAN_FRAME = struct.Struct("=IBBBB8s")  # can_id, len, __pad, __res0, len8_dlc, data
CANFD_FRAME = struct.Struct("=IBBBB64s")  # can_id, len, flags, __res0, __res1, data
EFF, RTR, ERR = 0x80000000, 0x40000000, 0x20000000
CHANNEL = "can7"

needs_recvmmsg = pytest.mark.skipif(
    sb.recvmmsg_function() is None, reason="this C library has no recvmmsg"
)


def classic(can_id: int, data: bytes = b"", *, dlc: int | None = None, len8: int = 0) -> bytes:
    return CAN_FRAME.pack(can_id, len(data) if dlc is None else dlc, 0, 0, len8, data)


def fd(can_id: int, data: bytes, flags: int = 0, length: int | None = None) -> bytes:
    return CANFD_FRAME.pack(can_id, len(data) if length is None else length, flags, 0, 0, data)


#: Every kind of frame a CAN_RAW socket returns (and two the kernel never makes).
FRAMES: list[bytes] = [
    classic(0x123, b"\x01\x02"),
    classic(0x000),
    classic(0x7FF, bytes(range(8))),
    classic(EFF | 0x18FF50E5, b"\xde\xad\xbe\xef"),
    classic(EFF | 0x00000001, b"\x01"),
    classic(RTR | 0x321, b"\xff" * 8, dlc=4),  # a remote frame with stale bytes in data
    classic(RTR | EFF | 0x1ABCDEF0, dlc=8),
    classic(RTR | 0x7AB, dlc=8, len8=12),  # classic remote, raw DLC 12 (len8_dlc)
    classic(0x456, bytes(8), len8=9),  # a data frame's len8_dlc is not its length
    classic(ERR | 0x044, bytes([0, 0x20, 0, 0, 0, 0, 0x80, 0x10])),  # controller + bus-off
    classic(ERR | 0x3FF, bytes([1, 2, 3, 4, 5, 6, 7, 8])),  # every class bit
    classic(0x124, b"\x05" + b"\x99" * 7, dlc=1),  # bytes beyond len are not data
    fd(0x123, bytes(range(64)), flags=0x01),  # BRS
    fd(EFF | 0x18DA00F1, b"\xaa" * 12, flags=0x03),  # BRS + ESI
    fd(0x456, b"\xbb" * 16, flags=0x02, length=10),  # not a valid FD length: rounded up
    fd(0x457, b"\xcc" * 8),  # an FD frame of 8 bytes
]


def pair() -> tuple[socket.socket, socket.socket]:
    tx, rx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    # A socketpair's queue is bounded by the sender's buffer (~270 frames by default).
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    rx.setsockopt(socket.SOL_SOCKET, sb.SO_TIMESTAMPNS, 1)  # as python-can does
    return tx, rx


@pytest.fixture
def twins() -> Iterator[tuple[socket.socket, socket.socket, socket.socket, socket.socket]]:
    """Two socketpairs: (sender, python-can side, sender, bulk side)."""
    a_tx, a_rx = pair()
    b_tx, b_rx = pair()
    yield a_tx, a_rx, b_tx, b_rx
    for s in (a_tx, a_rx, b_tx, b_rx):
        s.close()


def python_can_batch(sock: socket.socket, n: int) -> FrameBatch:
    """What the per-message path makes of ``n`` queued frames (SocketcanBus.recv + builder)."""
    builder = BatchBuilder(default_channel=CHANNEL)
    for _ in range(n):
        msg = capture_message(sock)
        assert msg is not None
        msg.channel = CHANNEL  # SocketcanBus defaults to its own channel
        builder.add(msg)
    return builder.build()


def receive_all(rx: sb.BulkReceiver) -> FrameBatch:
    """Everything queued, through as many buffer fills as needed."""
    parts = []
    while True:
        n = 0
        while n < rx.capacity and (got := rx.receive(n)):
            n += got
        parts.append(rx.take(n))
        if n < rx.capacity:
            return FrameBatch.concat(parts)


def assert_same_frames(got: FrameBatch, want: FrameBatch) -> None:
    for name in ("can_id", "flags", "dlc", "data", "channel"):
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert np.array_equal(a, b), f"{name}: {a.tolist()} != {b.tolist()}"
    assert got.channels == want.channels


# -- layouts -----------------------------------------------------------------------------------
def test_numpy_records_follow_the_ctypes_structures() -> None:
    assert sb.MMSG_DTYPE.itemsize == ctypes.sizeof(sb.MMsgHdr)
    assert sb.IOVEC_DTYPE.itemsize == ctypes.sizeof(sb.IoVec)
    fields = sb.MMSG_DTYPE.fields
    assert fields is not None
    assert fields["controllen"][1] == sb.MsgHdr.msg_controllen.offset
    assert fields["len"][1] == sb.MMsgHdr.msg_len.offset
    pointer = ctypes.sizeof(ctypes.c_void_p)
    # LP64 (x86-64, arm64) or ILP32 (32-bit ARM): every field where the C ABI puts it.
    if pointer == 8:
        assert (ctypes.sizeof(sb.MsgHdr), ctypes.sizeof(sb.MMsgHdr)) == (56, 64)
        assert (sb.MsgHdr.msg_controllen.offset, sb.MsgHdr.msg_flags.offset) == (40, 48)
    else:
        assert (ctypes.sizeof(sb.MsgHdr), ctypes.sizeof(sb.MMsgHdr)) == (28, 32)
        assert (sb.MsgHdr.msg_controllen.offset, sb.MsgHdr.msg_flags.offset) == (20, 24)
    layout = sb.LAYOUT
    assert layout.header == socket.CMSG_LEN(0) == pointer + 8
    assert layout.ts_space == socket.CMSG_SPACE(2 * ctypes.sizeof(ctypes.c_long))
    assert layout.expected == layout.ts_space + socket.CMSG_SPACE(4)
    assert sb.CONTROL_DTYPE.itemsize == layout.row


def test_timestamps_arrive_on_unix_datagrams_on_this_kernel() -> None:
    """The host tests below rely on it; if a kernel stops doing so they must say why."""
    tx, rx = pair()
    with tx, rx:
        tx.send(classic(0x1))
        _, ancillary, _, _ = rx.recvmsg(72, 256)
    assert [(level, kind, len(data)) for level, kind, data in ancillary] == [
        (socket.SOL_SOCKET, sb.SO_TIMESTAMPNS, 2 * ctypes.sizeof(ctypes.c_long))
    ]


# -- the same frames as python-can -------------------------------------------------------------
@needs_recvmmsg
def test_every_kind_of_frame_equals_python_can_through_batch_builder(
    twins: tuple[socket.socket, socket.socket, socket.socket, socket.socket],
) -> None:
    a_tx, a_rx, b_tx, b_rx = twins
    rx = sb.BulkReceiver(b_rx, CHANNEL, capacity=64)
    before = time.time()
    for frame in FRAMES:
        a_tx.send(frame)
        b_tx.send(frame)
    after = time.time()
    want = python_can_batch(a_rx, len(FRAMES))
    got = receive_all(rx)
    assert len(got) == len(FRAMES)
    assert_same_frames(got, want)
    assert got.data.shape == (len(FRAMES), 64)  # a payload longer than 8 bytes is present
    # Kernel receive times of separate datagrams, queued within the same instant.
    assert np.all(got.timestamp >= before - 1e-3) and np.all(got.timestamp <= after + 1e-3)
    assert np.all(np.abs(got.timestamp - want.timestamp) < 0.05)
    assert np.all(np.diff(got.timestamp) >= 0)
    assert (rx.untimed_frames, rx.irregular_rows, rx.malformed_rows, rx.dropped) == (0, 0, 0, 0)


@needs_recvmmsg
def test_classic_only_batches_are_8_bytes_wide(
    twins: tuple[socket.socket, socket.socket, socket.socket, socket.socket],
) -> None:
    a_tx, a_rx, b_tx, b_rx = twins
    frames = [f for f in FRAMES if len(f) == CAN_FRAME.size] + [fd(0x457, b"\xcc" * 8)]
    for frame in frames:
        a_tx.send(frame)
        b_tx.send(frame)
    got = receive_all(sb.BulkReceiver(b_rx, CHANNEL))
    assert_same_frames(got, python_can_batch(a_rx, len(frames)))
    assert got.data.shape == (len(frames), 8)


@needs_recvmmsg
def test_timestamps_are_each_frames_kernel_time(
    twins: tuple[socket.socket, socket.socket, socket.socket, socket.socket],
) -> None:
    """Frames queued 50 ms apart carry times 50 ms apart: per-frame kernel times, not the
    time of reading (which would be one instant for the whole batch)."""
    _, _, tx, rx_sock = twins
    for i in range(3):
        tx.send(classic(0x100 + i, bytes([i])))
        time.sleep(0.05)
    time.sleep(0.1)
    read_at = time.time()
    got = receive_all(sb.BulkReceiver(rx_sock, CHANNEL))
    gaps = np.diff(got.timestamp)
    assert np.all(gaps > 0.04) and np.all(gaps < 0.5), gaps
    assert got.timestamp[-1] < read_at - 0.09


# -- queue handling ----------------------------------------------------------------------------
@needs_recvmmsg
def test_empty_queue_returns_at_once_and_waits_only_when_asked(
    twins: tuple[socket.socket, socket.socket, socket.socket, socket.socket],
) -> None:
    _, _, _, rx_sock = twins
    rx = sb.BulkReceiver(rx_sock, CHANNEL)
    start = time.monotonic()
    assert rx.receive(0) == 0
    assert time.monotonic() - start < 0.05
    start = time.monotonic()
    assert rx.receive(0, timeout=0.2) == 0
    assert 0.15 <= time.monotonic() - start < 1.0
    assert len(rx.take(0)) == 0


@needs_recvmmsg
def test_a_frame_arriving_during_the_wait_is_returned_without_waiting_out_the_timeout(
    twins: tuple[socket.socket, socket.socket, socket.socket, socket.socket],
) -> None:
    _, _, tx, rx_sock = twins
    rx = sb.BulkReceiver(rx_sock, CHANNEL)
    timer = threading.Timer(0.1, lambda: tx.send(classic(0x42, b"\x01")))
    timer.start()
    start = time.monotonic()
    try:
        assert rx.receive(0, timeout=5.0) == 1
    finally:
        timer.join()
    assert time.monotonic() - start < 2.0
    assert rx.take(1).can_id.tolist() == [0x42]


@needs_recvmmsg
def test_more_queued_than_rows_is_read_in_order_over_several_fills(
    twins: tuple[socket.socket, socket.socket, socket.socket, socket.socket],
) -> None:
    _, _, tx, rx_sock = twins
    rx = sb.BulkReceiver(rx_sock, CHANNEL, capacity=4)
    for i in range(10):
        tx.send(classic(i, bytes([i])))
    assert rx.receive(0) == 4
    assert rx.receive(4) == 0  # no free row
    assert rx.take(4).can_id.tolist() == [0, 1, 2, 3]
    assert rx.receive(0, end=3) == 3  # at most up to ``end``
    assert rx.receive(3) == 1
    assert rx.take(4).can_id.tolist() == [4, 5, 6, 7]
    assert rx.receive(0) == 2
    batch = rx.take(2)
    assert batch.can_id.tolist() == [8, 9]
    assert batch.data[:, 0].tolist() == [8, 9]


@needs_recvmmsg
def test_a_failing_socket_raises_can_operation_error_like_python_can(
    twins: tuple[socket.socket, socket.socket, socket.socket, socket.socket],
) -> None:
    _, _, _, rx_sock = twins
    rx = sb.BulkReceiver(rx_sock, CHANNEL)
    rx_sock.close()
    with pytest.raises(can.CanOperationError, match="Error receiving: Bad file descriptor"):
        rx.receive(0)


# -- control messages --------------------------------------------------------------------------
@needs_recvmmsg
def test_frames_without_kernel_timestamp_are_stamped_at_reading_and_counted(
    twins: tuple[socket.socket, socket.socket, socket.socket, socket.socket],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, _, tx, rx_sock = twins
    rx = sb.BulkReceiver(rx_sock, CHANNEL)
    rx_sock.setsockopt(socket.SOL_SOCKET, sb.SO_TIMESTAMPNS, 0)
    tx.send(classic(0x1))
    time.sleep(0.2)
    tx.send(classic(0x2))
    before = time.time()
    with caplog.at_level(logging.WARNING, logger=sb.__name__):
        got = receive_all(rx)
    assert rx.untimed_frames == 2 and rx.irregular_rows == 2
    assert np.all(got.timestamp >= before)  # reading time: not passed off as kernel time
    assert "without a kernel timestamp" in caplog.text


@needs_recvmmsg
def test_rows_with_unexpected_control_messages_are_walked_one_by_one(
    twins: tuple[socket.socket, socket.socket, socket.socket, socket.socket],
) -> None:
    """SO_PASSCRED adds an SCM_CREDENTIALS message after the timestamp: not the expected
    layout, so those rows are parsed one by one, with the same result."""
    a_tx, a_rx, b_tx, b_rx = twins
    rx = sb.BulkReceiver(b_rx, CHANNEL)
    b_rx.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    for frame in FRAMES[:5]:
        a_tx.send(frame)
        b_tx.send(frame)
    got = receive_all(rx)
    assert_same_frames(got, python_can_batch(a_rx, 5))
    assert rx.irregular_rows == 5 and rx.untimed_frames == 0
    assert np.all(np.abs(got.timestamp - time.time()) < 5)


def _cmsg(kind: int, payload: bytes) -> bytes:
    header = struct.pack("@Nii", socket.CMSG_LEN(len(payload)), socket.SOL_SOCKET, kind)
    return (header + payload).ljust(socket.CMSG_SPACE(len(payload)), b"\0")


def _rows(controls: list[bytes], frames: list[bytes]) -> dict[str, Any]:
    n = len(frames)
    buf = np.zeros(n, sb.FRAME_DTYPE)
    raw = buf.view(np.uint8).reshape(n, sb.CANFD_MTU)
    for i, f in enumerate(frames):
        raw[i, : len(f)] = np.frombuffer(f, np.uint8)
    control = np.zeros((n, sb.LAYOUT.row), np.uint8)
    for i, c in enumerate(controls):
        control[i, : len(c)] = np.frombuffer(c, np.uint8)
    return {
        "frames": buf,
        "msg_len": np.array([len(f) for f in frames], np.uint32),
        "msg_flags": np.zeros(n, np.int32),
        "control": control,
        "controllen": np.array([len(c) for c in controls], np.uint64),
        "channel": CHANNEL,
    }


def test_the_drop_counter_is_read_from_the_control_messages() -> None:
    """Hand-built rows as the kernel writes them with SO_RXQ_OVFL (AF_UNIX has no drop
    counter, so the socket tests above cannot produce one): timestamp alone, timestamp
    then counter, and a counter before the timestamp (walked one by one)."""
    ts = struct.pack("@ll", 1_700_000_000, 123_456_789)
    controls = [
        _cmsg(sb.SO_TIMESTAMPNS, ts),
        _cmsg(sb.SO_TIMESTAMPNS, ts) + _cmsg(sb.SO_RXQ_OVFL, struct.pack("@I", 7)),
        _cmsg(sb.SO_RXQ_OVFL, struct.pack("@I", 9)) + _cmsg(sb.SO_TIMESTAMPNS, ts),
        _cmsg(sb.SO_TIMESTAMPNS, ts),
    ]
    frames = [classic(0x10 + i, bytes([i])) for i in range(4)]
    parsed = sb.parse_rows(**_rows(controls, frames))
    assert parsed.dropped == 9 and parsed.irregular == 1 and parsed.untimed == 0
    assert parsed.batch.timestamp.tolist() == [1_700_000_000 + 123_456_789 * 1e-9] * 4
    assert sb.parse_rows(**_rows(controls[:2], frames[:2])).dropped == 7
    assert sb.parse_rows(**_rows(controls[:1], frames[:1])).dropped is None


def test_rows_that_are_not_can_frames_are_skipped_and_counted() -> None:
    ts = _cmsg(sb.SO_TIMESTAMPNS, struct.pack("@ll", 1, 0))
    frames = [classic(0x1, b"\x01"), classic(0x2)[:10], classic(0x3, b"\x03")]
    parsed = sb.parse_rows(**_rows([ts] * 3, frames))
    assert parsed.malformed == 1
    assert parsed.batch.can_id.tolist() == [0x1, 0x3]


# -- the bus reader on the bulk path -----------------------------------------------------------
class UnixBus(can.BusABC):
    """A python-can bus over a socketpair end: its ``recv`` is python-can's SocketCAN one."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        super().__init__(channel=CHANNEL)

    def _recv_internal(self, timeout: float | None) -> tuple[can.Message | None, bool]:
        if not socket_ready(self.sock, timeout):
            return None, True
        msg = capture_message(self.sock)
        assert msg is not None
        msg.channel = CHANNEL
        return msg, True

    def send(self, msg: can.Message, timeout: float | None = None) -> None:
        raise AssertionError("candiag tried to transmit")

    def shutdown(self) -> None:
        self.sock.close()
        super().shutdown()


def socket_ready(sock: socket.socket, timeout: float | None) -> bool:
    import select

    return bool(select.select([sock], [], [], timeout)[0])


def bulk_on_unix(bus: can.BusABC, capacity: int) -> sb.BulkReceiver:
    assert isinstance(bus, UnixBus)
    return sb.BulkReceiver(bus.sock, CHANNEL, capacity)


@needs_recvmmsg
def test_reader_bulk_path_hands_over_the_same_batches_in_order() -> None:
    tx, rx_sock = pair()
    twin_tx, twin_rx = pair()
    reader = BusReader(
        "socketcan",
        CHANNEL,
        bus_factory=lambda: UnixBus(rx_sock),
        bulk_factory=bulk_on_unix,
        max_batch=7,
    )
    batches: list[int] = []
    with tx, twin_tx, twin_rx, reader:
        wait_for(lambda: reader.up)
        frames = [classic(i, bytes([i % 256])) for i in range(300)]
        for frame in frames:
            tx.send(frame)
            twin_tx.send(frame)
        got_parts = []
        while sum(batches) < len(frames):
            part = reader.drain()
            batches.append(len(part))
            got_parts.append(part)
            time.sleep(0.01)
            assert len(batches) < 1000
        got = FrameBatch.concat(got_parts)
        assert_same_frames(got, python_can_batch(twin_rx, len(frames)))
        assert reader.frames_received == len(frames)
        assert reader.receive_path == "bulk"
    assert not reader.running


class StubReceiver:
    """A bulk receiver that reports kernel drops and then fails like a link gone down."""

    capacity = 16

    def __init__(self, dropped: int, fail: bool) -> None:
        self.dropped = 0
        self._drops = dropped
        self._fail = fail
        self._sent = False

    def receive(self, start: int, timeout: float = 0.0, end: int | None = None) -> int:
        if not self._sent:
            self._sent = True
            return 2
        if self._fail:
            raise can.CanOperationError("Error receiving: Network is down", 100)
        time.sleep(min(timeout, 0.01))
        return 0

    def take(self, n: int) -> FrameBatch:
        self.dropped = self._drops
        return batch_of([can.Message(arbitration_id=i, data=b"\x01") for i in range(n)], CHANNEL)

    def release(self) -> None:
        pass


def test_socket_drops_add_up_across_reopened_sockets() -> None:
    """A reopened socket's counter restarts at 0: the reader adds the closed ones' counts."""
    receivers = iter([StubReceiver(5, fail=True), StubReceiver(3, fail=False)])
    reader = BusReader(
        "socketcan",
        CHANNEL,
        bus_factory=lambda: can.Bus(interface="virtual", channel="bulk-drops"),
        bulk_factory=lambda bus, cap: next(receivers),  # type: ignore[arg-type,return-value]
        backoff_min=0.01,
        backoff_max=0.05,
    )
    with reader:
        wait_for(lambda: reader.reconnects == 1 and reader.frames_received == 4)
        wait_for(lambda: reader.dropped_frames == 8)
        assert "Network is down" in reader.last_error
        source = ReaderSource(reader)
        assert source.dropped == {"interface": 0, "socket": 8}
        assert len(reader.drain()) == 4


def test_bulk_refused_at_run_time_falls_back_to_python_can_recv() -> None:
    class Refusing(StubReceiver):
        def receive(self, start: int, timeout: float = 0.0, end: int | None = None) -> int:
            raise sb.BulkUnsupportedError("recvmmsg refused: Operation not permitted")

    channel = "bulk-refused"
    sender = can.Bus(interface="virtual", channel=channel)
    reader = BusReader(
        "virtual",
        channel,
        bus_factory=lambda: can.Bus(interface="virtual", channel=channel),
        bulk_factory=lambda bus, cap: Refusing(0, False),  # type: ignore[arg-type,return-value]
    )
    try:
        with reader:
            wait_for(lambda: reader.up)
            time.sleep(0.1)
            sender.send(can.Message(arbitration_id=0x55, data=b"\x01", is_extended_id=False))
            wait_for(lambda: reader.frames_received == 1)
            assert reader.up and reader.reconnects == 0
            assert reader.receive_path == "per-message"
            assert reader.drain().can_id.tolist() == [0x55]
    finally:
        sender.shutdown()


def test_only_a_single_channel_socketcan_bus_is_read_in_bulk() -> None:
    bus = can.Bus(interface="virtual", channel="bulk-virtual")
    try:
        assert sb.bulk_unavailable_reason(bus) == "not a SocketCAN bus"
        assert sb.bulk_receiver_for(bus, 4096) is None
    finally:
        bus.shutdown()
