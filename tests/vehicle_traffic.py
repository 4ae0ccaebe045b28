"""Vehicle-like CAN traffic made from real vehicle DBCs (opendbc, MIT): every message of a DBC
at its cycle time (GenMsgCycleTime, else 100 ms) with values cantools encodes from the middle
of each signal's range, plus a rolling byte, so identifiers, lengths and payloads look like a
car's bus and nothing like a charger's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import can
import cantools
import numpy as np

from candiag.ingest.frames import FrameBatch
from tests.frame_batches import batch_of

OPENDBC_DIRS = (
    Path(__file__).resolve().parents[1] / ".realworld" / "dbc" / "opendbc",
    Path("/work/ext/opendbc/opendbc/dbc"),
)


def opendbc_files() -> list[Path]:
    for folder in OPENDBC_DIRS:
        if folder.is_dir():
            return sorted(folder.glob("*.dbc"))
    return []


def _payload(msg: Any, k: int) -> bytes:
    values = {}
    for sig in msg.signals:
        lo = sig.minimum if sig.minimum is not None else 0
        hi = sig.maximum if sig.maximum is not None else lo
        values[sig.name] = (lo + hi) / 2 if sig.is_float or sig.scale != 1 else int((lo + hi) / 2)
    try:
        data = bytearray(msg.encode(values, strict=False, scaling=True))
    except Exception:
        data = bytearray(msg.length)
    if data:
        data[-1] = (data[-1] + k) & 0xFF  # a rolling counter/checksum byte
    return bytes(data[:8]).ljust(min(msg.length, 8), b"\0")


def vehicle_batch(dbc: Path, seconds: float = 10.0, t0: float = 1_700_000_000.0) -> FrameBatch:
    """``seconds`` of the DBC's messages, each at its cycle time (no more than 60 ids)."""
    db = cantools.database.load_file(str(dbc), strict=False)
    rows = []
    for msg in db.messages[:60]:
        if msg.length > 8 or msg.is_container:
            continue
        cycle = (msg.cycle_time or 100) / 1000.0
        phase = (msg.frame_id % 97) / 1000.0
        for k, t in enumerate(np.arange(t0 + phase, t0 + seconds, cycle).tolist()):
            rows.append((t, msg.frame_id, bool(msg.is_extended_frame), _payload(msg, k)))
    rows.sort(key=lambda r: r[0])
    return batch_of(
        can.Message(timestamp=t, arbitration_id=i, is_extended_id=e, data=d, dlc=len(d))
        for t, i, e, d in rows
    )
