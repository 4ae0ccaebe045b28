"""ASAM MDF 4 bus logging (``.mf4``, CANedge-style loggers) through python-can's ``MF4Reader``.

An optional extra: python-can's ``mf4`` module needs ``asammdf`` (which pulls pandas), so it
is imported only when an MF4 file is read, never at start-up (``pip install 'candiag[mf4]'``).
MDF stores an error frame's ``CAN_ErrorFrame`` fields as python-can gives them (the failed
frame's identifier, no SocketCAN class), so error frames are unclassified here.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

from candiag.capture.formats import errormap
from candiag.capture.formats.rows import FrameRows, Sink
from candiag.deferred_imports import restore_mf4
from candiag.errors import CaptureError
from candiag.ingest.frames import FrameBatch


def available() -> bool:
    restore_mf4()  # the command line defers asammdf until an MF4 file is read
    return importlib.util.find_spec("asammdf") is not None


def read_mf4(path: str, sink: Sink, channels: list[str], chunk: int) -> Iterator[FrameBatch]:
    """Batches of the MF4 file; a reader error ends the file with ``sink.stopped``."""
    if not available():
        raise CaptureError(
            f"{path}: reading MF4 (ASAM MDF 4) captures needs the optional extra: "
            "pip install 'candiag[mf4]' (installs asammdf)"
        )
    from can.io.mf4 import MF4Reader

    rows = FrameRows(channels)
    count = 0
    try:
        reader: Any = MF4Reader(path)
    except Exception as err:  # asammdf raises many kinds on a damaged file
        raise CaptureError(f"{path}: not a readable MF4 file ({err})") from err
    try:
        with reader:
            for msg in reader:
                count += 1
                channel = str(msg.channel if msg.channel is not None else 0)
                if msg.is_error_frame:
                    record = errormap.UNCLASSIFIED
                    rows.add_error(msg.timestamp, record.can_id, record.data, channel)
                else:
                    rows.add_message(msg, channel)
                if len(rows) >= chunk:
                    yield rows.build()
    except Exception as err:  # the reader cannot resume after a damaged block
        sink.stopped(count + 1, None, "records", f"python-can's MF4 reader failed: {err}")
    if len(rows):
        yield rows.build()
