"""The frame batch: candiag's one in-memory representation of CAN traffic.

Everything downstream (decoder, health windows, bus load, node tracking) works
on a :class:`FrameBatch`, a struct of numpy arrays, so per-frame Python is
confined to the edge where frames arrive one by one (a live python-can bus).
Captures are parsed straight into batches, and so are live SocketCAN buses
(:mod:`candiag.ingest.socketcan_bulk`, many frames per ``recvmmsg``); other live
buses are accumulated into batches by :class:`BatchBuilder`, whose output the
SocketCAN path reproduces exactly.

Conventions (kept exactly, whatever the source):

* ``can_id`` holds the identifier **without** flag bits: 11 or 29 bits for data
  and remote frames, and the SocketCAN error-class bits (``CAN_ERR_MASK``) for
  error frames.  Whether a frame is extended, remote, error or FD is in
  ``flags`` only, so an error frame with class ``0x040`` can never be mistaken
  for message ``0x040``.
* ``dlc`` is the payload length in **bytes** (0..8 classic, up to 64 FD).  A
  remote frame keeps its requested DLC, with no data bytes on the wire.
* ``data`` is ``uint8[n, width]`` (width 8, or 64 once an FD frame is present),
  zero-padded beyond ``dlc``.
* ``channel`` indexes ``channels`` (e.g. ``["can0", "can1"]``).  A capture or a live
  source may name at most :data:`MAX_CHANNELS` channels (a :class:`ChannelTable`); the
  frames of any further channel name share one overflow channel, :data:`OVERFLOW_CHANNEL`,
  so a hostile file with a new name on every line costs a dictionary look-up per name,
  never a table that grows past what ``int16`` indices hold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import can

# SocketCAN can_id flag bits (linux/can.h).
CAN_EFF_FLAG = 0x80000000
CAN_RTR_FLAG = 0x40000000
CAN_ERR_FLAG = 0x20000000
CAN_EFF_MASK = 0x1FFFFFFF
CAN_SFF_MASK = 0x000007FF
CAN_ERR_MASK = 0x1FFFFFFF

# FrameBatch.flags bits.
FLAG_EXTENDED = np.uint8(0x01)
FLAG_REMOTE = np.uint8(0x02)
FLAG_ERROR = np.uint8(0x04)
FLAG_FD = np.uint8(0x08)
FLAG_BRS = np.uint8(0x10)
FLAG_ESI = np.uint8(0x20)

CLASSIC_WIDTH = 8
FD_WIDTH = 64

# Distinct channel names per capture (or per live batch): a charger has a few buses and a
# logger a few dozen; beyond this, names are not buses but damage (docs/capture-formats.md,
# "What is reported besides frames").
MAX_CHANNELS = 256
# The one channel that collects the frames of every name past MAX_CHANNELS.  The
# parentheses and the space keep it apart from any candump channel name.
OVERFLOW_CHANNEL = "(other channels)"

# CAN FD DLC code -> length in bytes.
FD_DLC_TO_LEN = (0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64)

F64 = npt.NDArray[np.float64]
U32 = npt.NDArray[np.uint32]
U8 = npt.NDArray[np.uint8]
I16 = npt.NDArray[np.int16]
BoolArray = npt.NDArray[np.bool_]


@dataclass
class FrameBatch:
    """A batch of CAN frames as parallel numpy arrays (see module docstring)."""

    timestamp: F64
    can_id: U32
    flags: U8
    dlc: U8
    data: U8
    channel: I16
    channels: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = self.timestamp.shape[0]
        for name in ("can_id", "flags", "dlc", "channel"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"FrameBatch.{name} must have shape ({n},)")
        if self.data.ndim != 2 or self.data.shape[0] != n:
            raise ValueError(f"FrameBatch.data must have shape ({n}, width)")

    def __len__(self) -> int:
        return int(self.timestamp.shape[0])

    # -- masks -----------------------------------------------------------------
    @property
    def is_error(self) -> BoolArray:
        return _bool(self.flags & FLAG_ERROR)

    @property
    def is_remote(self) -> BoolArray:
        return _bool(self.flags & FLAG_REMOTE) & ~self.is_error

    @property
    def is_data(self) -> BoolArray:
        return ~_bool(self.flags & (FLAG_ERROR | FLAG_REMOTE))

    @property
    def is_extended(self) -> BoolArray:
        return _bool(self.flags & FLAG_EXTENDED)

    @property
    def is_fd(self) -> BoolArray:
        return _bool(self.flags & FLAG_FD)

    # -- construction / slicing ------------------------------------------------
    @classmethod
    def empty(cls, width: int = CLASSIC_WIDTH, channels: Sequence[str] = ()) -> FrameBatch:
        return cls(
            timestamp=np.empty(0, np.float64),
            can_id=np.empty(0, np.uint32),
            flags=np.empty(0, np.uint8),
            dlc=np.empty(0, np.uint8),
            data=np.empty((0, width), np.uint8),
            channel=np.empty(0, np.int16),
            channels=list(channels),
        )

    def take(self, index: npt.NDArray[np.intp] | BoolArray | slice) -> FrameBatch:
        """Sub-batch by boolean mask, index array or slice (channels shared)."""
        return FrameBatch(
            timestamp=self.timestamp[index],
            can_id=self.can_id[index],
            flags=self.flags[index],
            dlc=self.dlc[index],
            data=self.data[index],
            channel=self.channel[index],
            channels=self.channels,
        )

    @classmethod
    def concat(cls, batches: Sequence[FrameBatch]) -> FrameBatch:
        """Concatenate batches, merging their channel tables."""
        batches = [b for b in batches if len(b)] or list(batches[:1])
        if not batches:
            return cls.empty()
        channels = ChannelTable()
        remapped: list[I16] = []
        for b in batches:
            lut = np.array([channels.lookup(c) for c in b.channels] or [0], np.int16)
            remapped.append(lut[b.channel] if len(b) else b.channel)
        width = max(b.data.shape[1] for b in batches)
        data = np.concatenate([_widen(b.data, width) for b in batches])
        return cls(
            timestamp=np.concatenate([b.timestamp for b in batches]),
            can_id=np.concatenate([b.can_id for b in batches]),
            flags=np.concatenate([b.flags for b in batches]),
            dlc=np.concatenate([b.dlc for b in batches]),
            data=data,
            channel=np.concatenate(remapped),
            channels=list(channels),
        )

    def to_messages(self) -> list[can.Message]:
        """Convert back to python-can messages (simulator, tests, other writers)."""
        import can

        out: list[can.Message] = []
        for i in range(len(self)):
            f = int(self.flags[i])
            n = int(self.dlc[i])
            remote = bool(f & FLAG_REMOTE)
            out.append(
                can.Message(
                    timestamp=float(self.timestamp[i]),
                    arbitration_id=int(self.can_id[i]),
                    is_extended_id=bool(f & FLAG_EXTENDED),
                    is_remote_frame=remote,
                    is_error_frame=bool(f & FLAG_ERROR),
                    is_fd=bool(f & FLAG_FD),
                    bitrate_switch=bool(f & FLAG_BRS),
                    error_state_indicator=bool(f & FLAG_ESI),
                    dlc=n,
                    data=b"" if remote else bytes(self.data[i, :n]),
                    channel=self.channels[int(self.channel[i])] if self.channels else None,
                    check=False,
                )
            )
        return out


def format_can_id(can_id: int, extended: bool) -> str:
    """An identifier as CAN users write it: 3 hex digits standard, 8 extended.

    The width comes from the frame's IDE flag, never from the value: an extended 0x285 is
    ``0x00000285``, a different identifier from the standard ``0x285``.
    """
    return f"0x{can_id:08X}" if extended else f"0x{can_id:03X}"


def _bool(bits: U8) -> BoolArray:
    return np.asarray(bits, dtype=np.bool_)


class ChannelTable(list[str]):
    """Channel names in order of first appearance, with a dictionary index and a cap.

    A ``list[str]`` (what :attr:`FrameBatch.channels` holds, so a copy is a batch's table)
    whose names are only added through :meth:`lookup`: the first :data:`MAX_CHANNELS`
    new names get their own index, every later one the index of :data:`OVERFLOW_CHANNEL`,
    added once.  Names given to the constructor are kept as they are (an existing table
    keeps its indices), whatever their number.
    """

    def __init__(self, names: Iterable[str] = (), limit: int = MAX_CHANNELS) -> None:
        super().__init__(names)
        self.limit = limit
        self._index: dict[str, int] = {}
        for i, name in enumerate(self):
            self._index.setdefault(name, i)

    def lookup(self, name: str) -> int:
        """Index of ``name``, added when new (the overflow channel's past the limit)."""
        idx = self._index.get(name)
        if idx is not None:
            return idx
        if len(self) >= self.limit:
            name = OVERFLOW_CHANNEL
            idx = self._index.get(name)
            if idx is not None:
                return idx
        idx = self._index[name] = len(self)
        self.append(name)
        return idx

    @property
    def overflow_index(self) -> int | None:
        """Index of the overflow channel once a name went to it, else None."""
        if len(self) <= self.limit:
            return None
        return self._index.get(OVERFLOW_CHANNEL)


def payload_matrix(blob: bytes, lengths: npt.NDArray[np.int64]) -> U8:
    """Payloads laid end to end in ``blob`` (``lengths[i]`` bytes each) as ``FrameBatch.data``:
    zero-padded rows, width 8, or 64 once a payload is longer than 8 bytes."""
    n = len(lengths)
    width = CLASSIC_WIDTH if n == 0 or int(lengths.max()) <= CLASSIC_WIDTH else FD_WIDTH
    data = np.zeros((n, width), np.uint8)
    flat = np.frombuffer(blob, np.uint8)
    if flat.size:
        rows = np.repeat(np.arange(n), lengths)
        starts = np.cumsum(lengths) - lengths
        data[rows, np.arange(flat.size) - np.repeat(starts, lengths)] = flat
    return data


def _widen(data: U8, width: int) -> U8:
    if data.shape[1] == width:
        return data
    out = np.zeros((data.shape[0], width), np.uint8)
    out[:, : data.shape[1]] = data
    return out


class BatchBuilder:
    """Accumulates python-can messages into a :class:`FrameBatch`.

    This is the only per-frame Python on the per-message live path (every interface but
    SocketCAN, which is read in bulk), so :meth:`add` is nothing but a list append
    (``builder.add`` *is* ``list.append``); :meth:`build` converts the whole list at once with ``np.fromiter`` over each field and one ``bytes.join`` for the
    payloads.  Measured against per-frame stores into numpy arrays, this halves the cost
    per frame on a fast source (``make bench``, ``bench_daemon``).
    """

    def __init__(self, default_channel: str = "can0") -> None:
        self._default_channel = default_channel
        self._messages: list[can.Message] = []
        self.add: Callable[[can.Message], None] = self._messages.append

    def __len__(self) -> int:
        return len(self._messages)

    def build(self) -> FrameBatch:
        """Return the accumulated frames and start a new, empty batch."""
        msgs = self._messages
        self._messages = []
        self.add = self._messages.append
        return _batch_of(msgs, self._default_channel)


def _batch_of(msgs: list[can.Message], default_channel: str) -> FrameBatch:
    n = len(msgs)
    if n == 0:
        return FrameBatch.empty(channels=[default_channel])
    error = np.fromiter((m.is_error_frame for m in msgs), np.bool_, n)
    extended = np.fromiter((m.is_extended_id for m in msgs), np.bool_, n)
    remote = np.fromiter((m.is_remote_frame for m in msgs), np.bool_, n) & ~error
    fd = np.fromiter((m.is_fd for m in msgs), np.bool_, n)
    flags = np.where(error, FLAG_ERROR, (extended * FLAG_EXTENDED) | (remote * FLAG_REMOTE))
    flags = flags.astype(np.uint8)
    if fd.any():
        brs = np.fromiter((m.bitrate_switch for m in msgs), np.bool_, n)
        esi = np.fromiter((m.error_state_indicator for m in msgs), np.bool_, n)
        flags |= (fd * FLAG_FD) | ((fd & brs) * FLAG_BRS) | ((fd & esi) * FLAG_ESI)
    lengths = np.fromiter((len(m.data) for m in msgs), np.int64, n)
    dlc = lengths.copy()
    if remote.any():
        dlc[remote] = [msgs[i].dlc for i in np.flatnonzero(remote).tolist()]
        lengths[remote] = 0  # a remote frame carries no data bytes
        flags_remote = remote.tolist()
        payloads = (b"" if r else m.data for m, r in zip(msgs, flags_remote, strict=True))
    else:
        payloads = (m.data for m in msgs)
    data = payload_matrix(b"".join(payloads), lengths)
    channels = ChannelTable()
    index: dict[object, int] = {}
    channel = np.empty(n, np.int16)
    for i, m in enumerate(msgs):
        ch = m.channel
        idx = index.get(ch)
        if idx is None:
            idx = index[ch] = channels.lookup(str(ch) if ch is not None else default_channel)
        channel[i] = idx
    return FrameBatch(
        timestamp=np.fromiter((m.timestamp for m in msgs), np.float64, n),
        can_id=np.fromiter((m.arbitration_id for m in msgs), np.uint32, n),
        flags=flags,
        dlc=dlc.astype(np.uint8),
        data=data,
        channel=channel,
        channels=list(channels),
    )
