"""Vector BLF: python-can's reader, with the error records it drops read back from the file.

python-can's ``BLFReader`` (4.6.1) knows the container format and the CAN/CAN FD message
objects; we keep it.  For error frames it is not enough: it yields a ``CAN_ERROR_EXT``
(object type 73) as a message whose ``arbitration_id`` is the identifier of the frame that
was hit, and drops ``flags``, ``ecc``, ``position`` and ``flagsExt``, the fields that say what
kind of error it was; a plain ``CAN_ERROR`` (type 2) it does not yield at all.

:class:`ErrorAwareBLFReader` wraps python-can's object loop (``_parse_data``): when an error
message comes out, the object it came from (python-can sets ``self._pos`` before each object,
4.6.1) is read again with our own struct of the documented layout (Tobias Lorenz's
``vector_blf``, ``CanErrorFrameExt.h``; docs/capture-formats.md) and mapped by
:func:`~candiag.capture.formats.errormap.from_vector_flags`; anything that does not fit
gives an unclassified error frame.  Objects python-can skips are walked too: ``CAN_ERROR``
becomes an unclassified error frame, other types are counted by type number.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, BinaryIO

import can
from can.io.blf import BLFParseError, BLFReader

from candiag.capture.formats import errormap
from candiag.capture.formats.rows import FrameRows, Sink
from candiag.errors import CaptureError
from candiag.ingest.frames import ChannelTable, FrameBatch

CAN_ERROR = 2
CAN_ERROR_EXT = 73
LOG_CONTAINER = 10
# Objects python-can 4.6.1 turns into messages (the rest it passes over).
READ_BY_PYTHON_CAN = frozenset({1, 73, 86, 100, 101, 96})
_OBJECT_BASE = struct.Struct("<4sHHLL")  # "LOBJ", header size, header version, size, type
_TIMESTAMP = struct.Struct("<LxxxxQ")  # object flags, (4 bytes), timestamp; same in v1 and v2
# CAN_ERROR_EXT body: channel, length, flags, ecc, position, dlc, (reserved), frame length
# in ns, id, flagsExt, (reserved), data[8].
_ERROR_EXT = struct.Struct("<HHLBBBxLLH2x8s")
_CHANNEL = struct.Struct("<H")
_TEN_MICROSECONDS = 1  # object flag: timestamps in 10 us units, else 1 ns
# What python-can's BLF reader raises on a damaged file (OSError: e.g. a read error).
_READ_ERRORS = (
    OSError, ValueError, IndexError, KeyError, struct.error, EOFError, zlib.error, BLFParseError,
)  # fmt: skip


def read_blf(
    stream: BinaryIO, sink: Sink, channels: ChannelTable, chunk: int, where: str
) -> Iterator[FrameBatch]:
    """Batches of at most ``chunk`` frames; a reader error ends the file with ``sink.stopped``.

    Channels are numbered from 1 as in CANalyzer (python-can counts from 0); ``sink.lines``
    counts the records read.
    """
    try:
        reader = ErrorAwareBLFReader(stream)
    except _READ_ERRORS as err:  # e.g. struct.error on a cut BLF header
        raise CaptureError(
            f"{where}: python-can cannot open it as blf ({err or type(err).__name__}); "
            "check that it is a Vector BLF file"
        ) from err
    rows = FrameRows(channels)
    count = 0
    try:
        with reader:
            for msg in reader:
                count += 1
                channel = str(msg.channel + 1) if isinstance(msg.channel, int) else "1"
                if msg.is_error_frame:
                    rows.add_error(msg.timestamp, msg.arbitration_id, bytes(msg.data), channel)
                else:
                    rows.add_message(msg, channel)
                if len(rows) >= chunk:
                    sink.lines = count
                    yield rows.build()
    except _READ_ERRORS as err:
        announced = int(getattr(reader, "object_count", 0) or 0)
        unread = announced - count if announced > count else None
        sink.stopped(
            count + 1, unread, "records", f"BLF reader failed ({err or type(err).__name__})"
        )
    sink.lines = count
    for kind, n in sorted(reader.skipped_types.items()):
        sink.not_a_frame(f"BLF objects of type {kind} (not CAN frames, not read)", n)
    if len(rows):
        yield rows.build()


class ErrorAwareBLFReader(BLFReader):
    """python-can's BLF reader whose error messages carry SocketCAN classes (or none)."""

    def __init__(self, file: Any, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.skipped_types: dict[int, int] = {}

    def _parse_data(self, data: bytes) -> Iterator[can.Message]:
        scanned = 0
        for msg in super()._parse_data(data):
            start = data.find(b"LOBJ", self._pos, self._pos + 8)
            if start < 0:  # not where python-can 4.6.1 puts it: keep the message as it is
                yield self._unclassified_copy(msg) if msg.is_error_frame else msg
                continue
            yield from self._skipped_objects(data, scanned, start)
            size = _OBJECT_BASE.unpack_from(data, start)[3]
            scanned = start + max(size, _OBJECT_BASE.size)
            yield self._with_error_class(data, start, msg) if msg.is_error_frame else msg
        yield from self._skipped_objects(data, scanned, self._pos)

    def _skipped_objects(self, data: bytes, begin: int, end: int) -> Iterator[can.Message]:
        """Objects in ``data[begin:end]`` python-can passed over."""
        pos = begin
        while pos < end:
            start = data.find(b"LOBJ", pos, min(pos + 8, end))
            if start < 0 or start + _OBJECT_BASE.size > len(data):
                return
            _, header_size, _, size, kind = _OBJECT_BASE.unpack_from(data, start)
            if size < _OBJECT_BASE.size:
                return
            if kind == CAN_ERROR:
                msg = self._plain_error(data, start, header_size)
                if msg is not None:
                    yield msg
            elif kind not in READ_BY_PYTHON_CAN:
                self.skipped_types[kind] = self.skipped_types.get(kind, 0) + 1
            pos = start + size

    def _timestamp(self, data: bytes, start: int) -> float:
        flags, ticks = _TIMESTAMP.unpack_from(data, start + _OBJECT_BASE.size)
        factor = Decimal("1e-5") if flags == _TEN_MICROSECONDS else Decimal("1e-9")
        return float(Decimal(ticks) * factor) + float(self.start_timestamp)

    def _plain_error(self, data: bytes, start: int, header_size: int) -> can.Message | None:
        try:
            (channel,) = _CHANNEL.unpack_from(data, start + header_size)
            ts = self._timestamp(data, start)
        except struct.error:
            return None
        record = errormap.UNCLASSIFIED
        return _error_message(ts, record, channel - 1)

    def _with_error_class(self, data: bytes, start: int, msg: can.Message) -> can.Message:
        try:
            _, header_size, _, size, kind = _OBJECT_BASE.unpack_from(data, start)
            if kind != CAN_ERROR_EXT or header_size + _ERROR_EXT.size > size:
                return self._unclassified_copy(msg)
            fields = _ERROR_EXT.unpack_from(data, start + header_size)
        except struct.error:
            return self._unclassified_copy(msg)
        _, _, flags, ecc, *_ = fields
        return _error_message(msg.timestamp, errormap.from_vector_flags(flags, ecc), msg.channel)

    @staticmethod
    def _unclassified_copy(msg: can.Message) -> can.Message:
        return _error_message(msg.timestamp, errormap.UNCLASSIFIED, msg.channel)


def _error_message(ts: float, record: errormap.ErrorRecord, channel: Any) -> can.Message:
    return can.Message(
        timestamp=ts,
        arbitration_id=record.can_id,
        is_extended_id=False,
        is_error_frame=True,
        dlc=8,
        data=record.data,
        channel=channel,
        check=False,
    )
