"""What every format reader shares: the column builder and the :class:`Sink` it reports into.

Readers other than candump's parse one record at a time (the formats are line or object
oriented, as python-can's readers are), append plain values here, and
:meth:`FrameRows.build` turns a chunk into a :class:`FrameBatch` with a handful of bulk
numpy conversions, as :class:`BatchBuilder` does.  Every reader, candump's too, reports
what is not a frame (bad lines, other records, where it stopped) into a :class:`Sink`.
The channel table is shared by every chunk of one capture, so channel indices are stable;
it is a :class:`~candiag.ingest.frames.ChannelTable` (a dictionary look-up per row, and
the names past its cap share one overflow channel).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from candiag.ingest.frames import (
    FLAG_BRS,
    FLAG_ERROR,
    FLAG_ESI,
    FLAG_EXTENDED,
    FLAG_FD,
    FLAG_REMOTE,
    ChannelTable,
    FrameBatch,
    payload_matrix,
)

if TYPE_CHECKING:
    import can

    from candiag.capture.stats import MalformedLine

ERROR = int(FLAG_ERROR)
EXTENDED = int(FLAG_EXTENDED)
REMOTE = int(FLAG_REMOTE)
FD = int(FLAG_FD)
BRS = int(FLAG_BRS)
ESI = int(FLAG_ESI)


class Sink(Protocol):
    """What a reader reports besides frames (implemented by ``CaptureStats``)."""

    lines: int  # lines (or records) read so far; text readers get it from the source
    blank: int  # lines with nothing but whitespace

    def bad_line(self, line: int, reason: str, text: str) -> None:
        """A line or record that could not be read and was skipped."""

    def add_malformed(self, items: list[MalformedLine]) -> None:
        """Lines skipped, many at once (their reasons already say the format)."""

    def not_a_frame(self, kind: str, count: int = 1) -> None:
        """Records that are not CAN frames (statistics, events), counted by kind."""

    def stopped(self, at: int, unread: int | None, unit: str, reason: str) -> None:
        """The reader could not go on: ``at`` is the first record not read."""


class FrameRows:
    """Rows of one chunk, appended one by one and converted in bulk."""

    def __init__(self, channels: list[str]) -> None:
        self.channels = channels if isinstance(channels, ChannelTable) else ChannelTable(channels)
        self._clear()

    def _clear(self) -> None:
        self._ts: list[float] = []
        self._id: list[int] = []
        self._flags: list[int] = []
        self._dlc: list[int] = []
        self._data: list[bytes] = []
        self._chan: list[int] = []

    def __len__(self) -> int:
        return len(self._ts)

    def channel(self, name: str) -> int:
        """Index of ``name`` in the shared channel table."""
        return self.channels.lookup(name)

    def add(self, ts: float, can_id: int, flags: int, dlc: int, data: bytes, channel: str) -> None:
        """One frame: ``dlc`` in bytes (a remote frame's requested length), ``data`` its payload."""
        self._ts.append(ts)
        self._id.append(can_id)
        self._flags.append(flags)
        self._dlc.append(dlc)
        self._data.append(data)
        self._chan.append(self.channel(channel))

    def add_error(self, ts: float, can_id: int, data: bytes, channel: str) -> None:
        """An error frame in SocketCAN layout (``can_id`` class bits, 8 payload bytes)."""
        self.add(ts, can_id, ERROR, 8, data, channel)

    def add_message(self, msg: can.Message, channel: str) -> None:
        """A python-can data or remote frame (error frames are mapped by the caller)."""
        flags = (EXTENDED if msg.is_extended_id else 0) | (REMOTE if msg.is_remote_frame else 0)
        if msg.is_fd:
            flags |= FD | (BRS if msg.bitrate_switch else 0)
            flags |= ESI if msg.error_state_indicator else 0
        data = b"" if msg.is_remote_frame else bytes(msg.data)
        self.add(msg.timestamp, msg.arbitration_id, flags, msg.dlc if msg.is_remote_frame
                 else len(data), data, channel)  # fmt: skip

    def build(self) -> FrameBatch:
        """The rows so far as one batch; the builder starts empty again."""
        n = len(self._ts)
        if n == 0:
            return FrameBatch.empty(channels=self.channels)
        lengths = np.fromiter(map(len, self._data), np.int64, n)
        data = payload_matrix(b"".join(self._data), lengths)
        batch = FrameBatch(
            timestamp=np.array(self._ts, np.float64),
            can_id=np.array(self._id, np.uint32),
            flags=np.array(self._flags, np.uint8),
            dlc=np.array(self._dlc, np.uint8),
            data=data,
            channel=np.array(self._chan, np.int16),
            channels=list(self.channels),
        )
        self._clear()
        return batch


class LineReader:
    """A line-oriented format's reader: each line into :attr:`rows`, a bad one skipped.

    Subclasses say what one line is (:meth:`read_line`: ``None`` when it was read or is
    not a frame, else the reason in words); the loop, the chunking and the report of a
    bad line (its number, ``"<prefix>: <reason>"`` and its text) are the same for every
    text format.
    """

    prefix = "?"  # the format's name at the start of every reason

    def __init__(self, sink: Sink, channels: list[str], chunk: int) -> None:
        self.sink = sink
        self.rows = FrameRows(channels)
        self.chunk = chunk

    def batches(self, lines: Iterable[tuple[int, str]]) -> Iterator[FrameBatch]:
        """Batches of at most ``chunk`` frames from numbered lines."""
        for number, line in lines:
            reason = self.read_line(line)
            if reason is not None:
                self.sink.bad_line(number, f"{self.prefix}: {reason}", line)
            if len(self.rows) >= self.chunk:
                yield self.rows.build()
        if len(self.rows):
            yield self.rows.build()

    def read_line(self, line: str) -> str | None:
        """Read one line into :attr:`rows`; the reason when it is not readable."""
        raise NotImplementedError


def hex_bytes(tokens: Sequence[str], base: int = 16) -> bytes | str:
    """Data bytes written one per token (``"0A"``), or the reason they are not."""
    out = bytearray()
    digits = _HEX_TOKEN if base == 16 else _DEC_TOKEN
    for token in tokens:
        if not digits.fullmatch(token):
            kind = "hexadecimal" if base == 16 else "decimal"
            return f"data byte {token!r} is not {kind}"
        value = int(token, base)
        if value > 0xFF:
            return f"data byte {token!r} is above 255"
        out.append(value)
    return bytes(out)


_HEX_TOKEN = re.compile(r"[0-9A-Fa-f]{1,2}")
_DEC_TOKEN = re.compile(r"[0-9]{1,3}")
