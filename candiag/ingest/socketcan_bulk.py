"""Bulk SocketCAN receive: many frames per system call with ``recvmmsg(2)``, parsed by numpy.

This module owns the daemon's receive path on a Linux SocketCAN socket (the production
interface of the systemd service): it reads the frames queued on the ``CAN_RAW`` socket of a
python-can :class:`~can.interfaces.socketcan.SocketcanBus`, up to a whole batch per system
call, into preallocated buffers, and turns those buffers into a :class:`FrameBatch` with a
few vectorized numpy operations.  No python-can :class:`~can.Message` is built per frame.

Why by hand instead of python-can's ``recv``: python-can spends a ``select`` and a
``recvmsg`` system call, a ``struct`` unpack and a ``Message`` object per frame, and the
daemon then converts the ``Message`` objects back into arrays (``BatchBuilder``).  On the
pre-filled socket of ``bench/bench_socketcan.py`` (real SocketCAN, vcan in the microVM) that
made the daemon's whole path slower than a bare python-can receive loop; with this module it
is faster (the figures are in ``docs/socketcan.md``).  Everything here only *reads*: the
only C function resolved is ``recvmmsg``; nothing is ever written to a CAN socket.

What a batch from here holds is exactly what ``BatchBuilder`` makes of the
``Message`` objects python-can's ``capture_message`` builds for the same frames (the VM
suite and ``tests/test_socketcan_bulk.py`` compare them field by field):

* ``can_id`` without flag bits (``& 0x1FFFFFFF`` with ``CAN_EFF_FLAG``, else ``& 0x7FF``,
  as python-can masks; error frames keep their class bits, which are all below 0x400);
* flags: extended, remote, error, FD (the kernel returned a 72-byte ``canfd_frame``, not a
  16-byte ``can_frame``), BRS and ESI (FD frames only); an error frame is only ``ERROR``
  (plus FD bits when it came as an FD frame);
* ``dlc`` in bytes; a remote frame keeps its requested DLC and has no data (a classic
  frame's ``len8_dlc`` 9..15 is kept for remote frames as python-can does); a length the
  kernel never produces (not a valid CAN FD length) is rounded up to the next valid one as
  python-can does, and capped at 64 where python-can would raise;
* ``data`` zero-padded beyond the payload, width 8, or 64 once a payload is longer than 8
  bytes (``BatchBuilder``'s rule);
* ``timestamp`` from the ``SO_TIMESTAMPNS`` control message (kernel software receive time,
  ``sec + nsec * 1e-9`` as python-can computes it).  A frame without one (nothing on a
  python-can socket, which sets the option) gets the wall-clock time at parsing instead;
  such frames are counted in :attr:`BulkReceiver.untimed_frames` and logged once, never
  passed off as kernel times;
* ``channel`` the bus channel name.

Drops: the receiver turns on ``SO_RXQ_OVFL``.  The kernel then attaches to each received
frame its cumulative count of frames this socket dropped because its receive buffer was
full (``sk_drops``); :attr:`BulkReceiver.dropped` is the latest count seen.  The count
travels with frames: drops become visible with the first frame queued after them.

Control messages are checked vectorized: each row must hold the timestamp alone, or the
timestamp then the drop counter, at the offsets ``socket.CMSG_LEN``/``CMSG_SPACE`` give
on this platform (``cmsghdr`` and ``timespec`` are smaller on 32-bit ARM).  Only rows that
do not match (an unexpected extra control message, a truncated control buffer) are walked
one by one.  The ``iovec``/``msghdr``/``mmsghdr`` layouts come from :mod:`ctypes`
structures, so their offsets are the platform's C ABI.

When ``recvmmsg`` or ``AF_CAN`` is missing, or the bus is not a plain single-channel
SocketCAN bus, :func:`bulk_receiver_for` returns ``None`` and the caller keeps python-can's
per-message path (:class:`candiag.ingest.live.BusReader` does).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
import select
import socket
import time
from dataclasses import dataclass
from typing import Any

import can
import numpy as np
import numpy.typing as npt

from candiag.ingest.frames import (
    CAN_EFF_FLAG,
    CAN_EFF_MASK,
    CAN_ERR_FLAG,
    CAN_RTR_FLAG,
    CAN_SFF_MASK,
    CLASSIC_WIDTH,
    FD_DLC_TO_LEN,
    FD_WIDTH,
    FLAG_BRS,
    FLAG_ERROR,
    FLAG_ESI,
    FLAG_EXTENDED,
    FLAG_FD,
    FLAG_REMOTE,
    FrameBatch,
)

log = logging.getLogger(__name__)

#: ``SO_TIMESTAMPNS`` as python-can sets it (``SO_TIMESTAMPNS_OLD``: a ``timespec`` of two
#: C ``long``, the layout python-can's ``@ll`` unpacks), and ``SO_RXQ_OVFL`` (Linux
#: ``asm-generic/socket.h``, the same value on x86 and ARM).
SO_TIMESTAMPNS = 35
SO_RXQ_OVFL = 40
CAN_MTU = 16  # sizeof(struct can_frame)
CANFD_MTU = 72  # sizeof(struct canfd_frame)
CANFD_BRS = 0x01
CANFD_ESI = 0x02
CAN_MAX_DLEN = 8
CAN_MAX_RAW_DLC = 15

#: The only C library function this module calls (tests/test_security.py checks it).
LIBC_FUNCTIONS = ("recvmmsg",)

#: Frames per buffer at most: 4096 rows are ~1.1 MB of buffers per bus.  Larger batches
#: gain nothing measurable (the daemon's drain concatenates them anyway).
MAX_CAPACITY = 4096

# A CAN FD length code table: any byte -> the next valid CAN FD length (python-can's
# rounding), capped at 64.
_ROUND_UP = np.array(
    [min([v for v in FD_DLC_TO_LEN if v >= n] or [64]) for n in range(256)], np.uint8
)


# -- C structures ------------------------------------------------------------------------------
class IoVec(ctypes.Structure):
    """``struct iovec``."""

    _fields_ = (("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t))


class MsgHdr(ctypes.Structure):
    """``struct msghdr`` as the kernel reads it (``msg_iovlen``/``msg_controllen`` are
    ``size_t``; musl pads its ``int`` fields to the same offsets)."""

    _fields_ = (
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),  # socklen_t
        ("msg_iov", ctypes.c_void_p),  # struct iovec *
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    )


class MMsgHdr(ctypes.Structure):
    """``struct mmsghdr``: one message of ``recvmmsg``."""

    _fields_ = (("msg_hdr", MsgHdr), ("msg_len", ctypes.c_uint))


def _uint(size: int) -> np.dtype[Any]:
    return np.dtype(f"=u{size}")


def _int(size: int) -> np.dtype[Any]:
    return np.dtype(f"=i{size}")


_PTR = _uint(ctypes.sizeof(ctypes.c_void_p))
_SIZE_T = _uint(ctypes.sizeof(ctypes.c_size_t))
_LONG = _int(ctypes.sizeof(ctypes.c_long))

#: ``struct mmsghdr`` as a numpy record, offsets from the ctypes structures.
MMSG_DTYPE = np.dtype(
    {
        "names": ["iov", "iovlen", "control", "controllen", "flags", "len"],
        "formats": [_PTR, _SIZE_T, _PTR, _SIZE_T, _int(ctypes.sizeof(ctypes.c_int)), "=u4"],
        "offsets": [
            MsgHdr.msg_iov.offset,
            MsgHdr.msg_iovlen.offset,
            MsgHdr.msg_control.offset,
            MsgHdr.msg_controllen.offset,
            MsgHdr.msg_flags.offset,
            MMsgHdr.msg_len.offset,
        ],
        "itemsize": ctypes.sizeof(MMsgHdr),
    }
)
IOVEC_DTYPE = np.dtype(
    {
        "names": ["base", "len"],
        "formats": [_PTR, _SIZE_T],
        "offsets": [IoVec.iov_base.offset, IoVec.iov_len.offset],
        "itemsize": ctypes.sizeof(IoVec),
    }
)
#: ``struct canfd_frame`` (a ``can_frame`` is its first 16 bytes, ``len8_dlc`` at 7).
FRAME_DTYPE = np.dtype(
    {
        "names": ["can_id", "len", "flags", "len8_dlc", "data"],
        "formats": ["=u4", "u1", "u1", "u1", ("u1", (FD_WIDTH,))],
        "offsets": [0, 4, 5, 7, 8],
        "itemsize": CANFD_MTU,
    }
)


@dataclass(frozen=True)
class ControlLayout:
    """Where the kernel puts the two control messages, for this platform's C ABI."""

    header: int  # CMSG_LEN(0): cmsg_len (size_t) + cmsg_level + cmsg_type
    align: int  # CMSG_ALIGN granularity
    ts_size: int  # struct timespec (two C long)
    ts_space: int  # CMSG_SPACE(timespec): offset of the second control message
    ts_len: int  # CMSG_LEN(timespec)
    drop_len: int  # CMSG_LEN(uint32)
    expected: int  # CMSG_SPACE(timespec) + CMSG_SPACE(uint32)
    row: int  # control bytes per frame (room for one unexpected message too)

    @classmethod
    def native(cls) -> ControlLayout:
        ts_size = 2 * ctypes.sizeof(ctypes.c_long)
        header = socket.CMSG_LEN(0)
        ts_space = socket.CMSG_SPACE(ts_size)
        expected = ts_space + socket.CMSG_SPACE(4)
        return cls(
            header=header,
            align=socket.CMSG_SPACE(1) - socket.CMSG_SPACE(0),
            ts_size=ts_size,
            ts_space=ts_space,
            ts_len=socket.CMSG_LEN(ts_size),
            drop_len=socket.CMSG_LEN(4),
            expected=expected,
            row=expected + socket.CMSG_SPACE(48),
        )

    def dtype(self) -> np.dtype[Any]:
        """A control row as a numpy record: both expected headers and payloads."""
        size = self.header - 8  # cmsg_len is size_t; level and type are two ints
        length = _uint(size)
        second = self.ts_space
        return np.dtype(
            {
                "names": "len1 level1 type1 sec nsec len2 level2 type2 drops".split(),
                "formats": [length, "=i4", "=i4", _LONG, _LONG, length, "=i4", "=i4", "=u4"],
                "offsets": [
                    0,
                    size,
                    size + 4,
                    self.header,
                    self.header + self.ts_size // 2,
                    second,
                    second + size,
                    second + size + 4,
                    second + self.header,
                ],
                "itemsize": self.row,
            }
        )


LAYOUT = ControlLayout.native()
CONTROL_DTYPE = LAYOUT.dtype()


@dataclass
class Parsed:
    """What one parse of received rows produced."""

    batch: FrameBatch
    dropped: int | None  # the kernel's cumulative drop count in the last row carrying it
    untimed: int  # frames without a kernel timestamp (wall clock used instead)
    irregular: int  # rows whose control messages were walked one by one
    malformed: int  # rows that were neither a can_frame nor a canfd_frame (skipped)


def parse_rows(
    frames: npt.NDArray[Any],
    msg_len: npt.NDArray[np.uint32],
    msg_flags: npt.NDArray[Any],
    control: npt.NDArray[np.uint8],
    controllen: npt.NDArray[Any],
    channel: str,
    layout: ControlLayout = LAYOUT,
) -> Parsed:
    """Parse received rows (``FRAME_DTYPE`` frames and raw control rows) into a batch.

    ``control`` is ``uint8[n, layout.row]``; ``controllen`` and ``msg_flags`` are what the
    kernel returned in each ``msghdr``.
    """
    n = int(frames.shape[0])
    valid = (msg_len == CAN_MTU) | (msg_len == CANFD_MTU)
    malformed = n - int(np.count_nonzero(valid))
    if malformed:
        frames, msg_len, msg_flags = frames[valid], msg_len[valid], msg_flags[valid]
        control, controllen = control[valid], controllen[valid]
        n -= malformed

    # -- control messages: timestamp (and drop counter) --------------------------------------
    record = CONTROL_DTYPE if layout is LAYOUT else layout.dtype()
    ctl = control.view(record).reshape(n) if n else np.zeros(0, record)
    first_ok = (
        (ctl["len1"] == layout.ts_len)
        & (ctl["level1"] == socket.SOL_SOCKET)
        & (ctl["type1"] == SO_TIMESTAMPNS)
        & ((msg_flags & socket.MSG_CTRUNC) == 0)
    )
    only_ts = first_ok & (controllen == layout.ts_space)
    with_drops = (
        first_ok
        & (controllen == layout.expected)
        & (ctl["len2"] == layout.drop_len)
        & (ctl["level2"] == socket.SOL_SOCKET)
        & (ctl["type2"] == SO_RXQ_OVFL)
    )
    timestamp = ctl["sec"].astype(np.float64) + ctl["nsec"].astype(np.float64) * 1e-9
    last_row, dropped = -1, None
    drop_rows = np.flatnonzero(with_drops)
    if drop_rows.size:
        last_row = int(drop_rows[-1])
        dropped = int(ctl["drops"][last_row])
    irregular_rows = np.flatnonzero(~(only_ts | with_drops)).tolist()
    untimed = 0
    if irregular_rows:
        now = time.time()
        for i in irregular_rows:
            ts, drops = _walk_control(bytes(control[i, : int(controllen[i])]), layout)
            if ts is None:
                timestamp[i] = now
                untimed += 1
            else:
                timestamp[i] = ts
            if drops is not None and i > last_row:
                last_row, dropped = i, drops

    # -- frames -------------------------------------------------------------------------------
    raw_id = frames["can_id"]
    extended = (raw_id & CAN_EFF_FLAG) != 0
    rtr = (raw_id & CAN_RTR_FLAG) != 0
    error = (raw_id & CAN_ERR_FLAG) != 0
    can_id = raw_id & np.where(extended, np.uint32(CAN_EFF_MASK), np.uint32(CAN_SFF_MASK))
    fd = msg_len == CANFD_MTU
    length = _ROUND_UP[frames["len"]]
    payload = np.minimum(length, np.where(fd, FD_WIDTH, CAN_MAX_DLEN).astype(np.uint8))
    remote = rtr & ~error
    flags = np.where(error, FLAG_ERROR, (extended * FLAG_EXTENDED) | (remote * FLAG_REMOTE)).astype(
        np.uint8
    )
    if fd.any():
        fd_flags = frames["flags"]
        flags |= (
            (fd * FLAG_FD)
            | ((fd & ((fd_flags & CANFD_BRS) != 0)) * FLAG_BRS)
            | ((fd & ((fd_flags & CANFD_ESI) != 0)) * FLAG_ESI)
        ).astype(np.uint8)
    lengths = np.where(rtr, np.uint8(0), payload)  # python-can drops a remote frame's data
    dlc = lengths.copy()
    if remote.any():
        requested = length.copy()
        len8 = frames["len8_dlc"]
        raw_dlc = ~fd & (length == CAN_MAX_DLEN) & (len8 > CAN_MAX_DLEN) & (len8 <= CAN_MAX_RAW_DLC)
        requested[raw_dlc] = len8[raw_dlc]
        dlc[remote] = requested[remote]
    width = CLASSIC_WIDTH if n == 0 or int(lengths.max()) <= CLASSIC_WIDTH else FD_WIDTH
    data = frames["data"][:, :width]
    data = np.where(np.arange(width, dtype=np.uint8) < lengths[:, None], data, np.uint8(0))
    batch = FrameBatch(
        timestamp=timestamp,
        can_id=can_id.astype(np.uint32),
        flags=flags,
        dlc=dlc,
        data=data.astype(np.uint8, copy=False),
        channel=np.zeros(n, np.int16),
        channels=[channel],
    )
    return Parsed(batch, dropped, untimed, len(irregular_rows), malformed)


def _walk_control(raw: bytes, layout: ControlLayout) -> tuple[float | None, int | None]:
    """(timestamp, drop count) from one row's control messages, wherever they are."""
    size = layout.header - 8
    ts: float | None = None
    drops: int | None = None
    pos = 0
    while pos + layout.header <= len(raw):
        length = int.from_bytes(raw[pos : pos + size], _byteorder())
        level = int.from_bytes(raw[pos + size : pos + size + 4], _byteorder(), signed=True)
        kind = int.from_bytes(raw[pos + size + 4 : pos + size + 8], _byteorder(), signed=True)
        if length < layout.header:
            break
        body = raw[pos + layout.header : pos + length]
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(body) >= layout.ts_size:
            half = layout.ts_size // 2
            sec = int.from_bytes(body[:half], _byteorder(), signed=True)
            nsec = int.from_bytes(body[half : layout.ts_size], _byteorder(), signed=True)
            ts = float(np.float64(sec) + np.float64(nsec) * 1e-9)
        elif level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL and len(body) >= 4:
            drops = int.from_bytes(body[:4], _byteorder())
        pos += (length + layout.align - 1) & ~(layout.align - 1)
    return ts, drops


def _byteorder() -> Any:
    return "little" if np.little_endian else "big"


# -- the receiver ------------------------------------------------------------------------------
@functools.cache
def recvmmsg_function() -> Any:
    """libc's ``recvmmsg`` through ctypes (looked up once), or ``None`` where there is none."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = getattr(libc, LIBC_FUNCTIONS[0])
    except (OSError, AttributeError, TypeError):
        return None
    function.argtypes = (
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_void_p,
    )
    function.restype = ctypes.c_int
    return function


class BulkUnsupportedError(RuntimeError):
    """``recvmmsg`` is refused on this system (seccomp, an old kernel): use python-can."""


class BulkReceiver:
    """Receives frames from a bound ``CAN_RAW`` socket in bulk (see module docstring).

    Rows ``[0, n)`` of the buffers fill with :meth:`receive` (called with ``start = n``)
    and are parsed and released with :meth:`take`.  The socket stays the caller's (the
    python-can bus closes it); this object only reads from it and turns on
    ``SO_TIMESTAMPNS`` (python-can already did) and ``SO_RXQ_OVFL``.
    """

    def __init__(self, sock: socket.socket, channel: str, capacity: int = MAX_CAPACITY) -> None:
        function = recvmmsg_function()
        if function is None:
            raise BulkUnsupportedError("this C library has no recvmmsg")
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._recvmmsg = function
        self.sock = sock
        self.channel = channel
        self.capacity = capacity
        self.dropped = 0
        self.untimed_frames = 0
        self.irregular_rows = 0
        self.malformed_rows = 0
        self.received = 0
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
            self.counts_drops = True
        except OSError:
            self.counts_drops = False
        self._frames = np.zeros(capacity, FRAME_DTYPE)
        self._control = np.zeros((capacity, LAYOUT.row), np.uint8)
        self._iov = np.zeros(capacity, IOVEC_DTYPE)
        self._iov["base"] = self._frames.ctypes.data + np.arange(capacity) * CANFD_MTU
        self._iov["len"] = CANFD_MTU
        self._msgs = np.zeros(capacity, MMSG_DTYPE)
        self._msgs["iov"] = self._iov.ctypes.data + np.arange(capacity) * IOVEC_DTYPE.itemsize
        self._msgs["iovlen"] = 1
        self._msgs["control"] = self._control.ctypes.data + np.arange(capacity) * LAYOUT.row
        self._msgs["controllen"] = LAYOUT.row
        self._msgs_address = int(self._msgs.ctypes.data)
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN | select.POLLERR)
        self._warned_untimed = False

    def release(self) -> None:
        """Stop counting drops on the socket (before python-can reads it again)."""
        if self.counts_drops:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 0)
            except OSError:
                pass

    def receive(self, start: int, timeout: float = 0.0, end: int | None = None) -> int:
        """Receive into rows ``start..end`` (default: to ``capacity``) what is queued; if
        nothing is, wait up to ``timeout`` seconds for frames.  Returns the rows filled.

        Raises :class:`can.CanOperationError` (as python-can's ``recv`` does) when the
        socket fails, e.g. ``ENETDOWN`` once the interface went down.
        """
        room = min(self.capacity, self.capacity if end is None else end) - start
        if room <= 0:
            return 0
        got = self._recvmmsg_nowait(start, room)
        if got or timeout <= 0:
            return got
        try:
            ready = self._poll.poll(max(1, int(timeout * 1000 + 0.999)))
        except OSError as err:
            raise can.CanOperationError(f"Failed to receive: {err.strerror}", err.errno) from err
        return self._recvmmsg_nowait(start, room) if ready else 0

    def _recvmmsg_nowait(self, start: int, room: int) -> int:
        got = int(
            self._recvmmsg(
                self.sock.fileno(),
                self._msgs_address + start * MMSG_DTYPE.itemsize,
                room,
                socket.MSG_DONTWAIT,
                None,
            )
        )
        if got >= 0:
            self.received += got
            return got
        code = ctypes.get_errno()
        if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
            return 0
        if code in (errno.ENOSYS, errno.EPERM) and not self.received:
            raise BulkUnsupportedError(f"recvmmsg refused: {os.strerror(code)}")
        raise can.CanOperationError(f"Error receiving: {os.strerror(code)}", code)

    def take(self, n: int) -> FrameBatch:
        """Parse rows ``0..n`` into a batch and make the rows free for the next receive."""
        if n <= 0:
            return FrameBatch.empty(channels=[self.channel])
        msgs = self._msgs[:n]
        try:
            parsed = parse_rows(
                self._frames[:n],
                msgs["len"],
                msgs["flags"],
                self._control[:n],
                msgs["controllen"],
                self.channel,
            )
        finally:
            msgs["controllen"] = LAYOUT.row  # the kernel wrote back what it used
        if parsed.dropped is not None:
            self.dropped = parsed.dropped
        self.irregular_rows += parsed.irregular
        self.malformed_rows += parsed.malformed
        if parsed.untimed:
            self.untimed_frames += parsed.untimed
            if not self._warned_untimed:
                self._warned_untimed = True
                log.warning(
                    "%s: %d frames came without a kernel timestamp (SO_TIMESTAMPNS); "
                    "stamped with the wall clock at reading instead",
                    self.channel,
                    parsed.untimed,
                )
        return parsed.batch


def bulk_unavailable_reason(bus: Any) -> str | None:
    """Why ``bus`` cannot be read in bulk, or ``None`` when it can."""
    try:
        from can.interfaces.socketcan import SocketcanBus
    except ImportError as err:  # pragma: no cover - python-can always ships it
        return f"python-can has no socketcan interface ({err})"
    if not isinstance(bus, SocketcanBus):
        return "not a SocketCAN bus"
    if not getattr(bus, "channel", ""):
        return "a bus on every interface (channel '') needs each frame's interface"
    if getattr(bus, "filters", None) and not getattr(bus, "_is_filtered", True):
        return "python-can filters this bus in software"
    sock = getattr(bus, "socket", None)
    if not isinstance(sock, socket.socket) or sock.family != getattr(socket, "AF_CAN", -1):
        return "the bus has no AF_CAN socket"
    if recvmmsg_function() is None:
        return "no recvmmsg in this C library"
    return None


def bulk_receiver_for(bus: Any, capacity: int) -> BulkReceiver | None:
    """A :class:`BulkReceiver` on a python-can SocketCAN bus, or ``None`` (with the reason
    logged) when the bus must be read through python-can's ``recv``."""
    reason = bulk_unavailable_reason(bus)
    if reason is None:
        try:
            return BulkReceiver(bus.socket, str(bus.channel), min(capacity, MAX_CAPACITY))
        except (OSError, BulkUnsupportedError, ValueError) as err:
            reason = f"bulk receive could not start ({err})"
    log.debug("bus %s: python-can per-message receive: %s", getattr(bus, "channel", "?"), reason)
    return None
