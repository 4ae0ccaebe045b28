"""python-can's CSV log format, read line by line with the semantics of its ``CSVReader``.

Columns (python-can ``CSVWriter``): ``timestamp,arbitration_id,extended,remote,error,dlc,data``
with the id in hex and the payload in base64; the first line is the header.  We own the loop
because python-can's reader stops at the first bad row; here a bad row is reported and skipped.
The format has no channel column (frames are on ``can0``) and does not say where an error
frame came from, so its ``arbitration_id`` cannot be trusted as SocketCAN class bits: error
rows are *unclassified* error frames (docs/capture-formats.md).
"""

from __future__ import annotations

import binascii
from base64 import b64decode

from candiag.capture.formats import errormap
from candiag.capture.formats.rows import EXTENDED, REMOTE, LineReader, Sink
from candiag.ingest.frames import CAN_EFF_MASK, CAN_SFF_MASK

NAME = "CSV"
HEADER = "timestamp,arbitration_id,extended,remote,error,dlc,data"
CHANNEL = "can0"


class CsvReader(LineReader):
    """Reads python-can CSV lines into batches of at most ``chunk`` rows."""

    prefix = NAME

    def __init__(self, sink: Sink, channels: list[str], chunk: int) -> None:
        super().__init__(sink, channels, chunk)
        self._first = True

    def read_line(self, line: str) -> str | None:
        text = line.strip()
        if self._first:
            self._first = False
            if text.replace(" ", "") == HEADER:
                return None
            # python-can skips the first line whatever it is; a frame there is read.
        if not text:
            return None
        return self._row(text)

    def _row(self, text: str) -> str | None:
        fields = text.split(",")
        if len(fields) != 7:
            return f"expected 7 comma-separated columns ({HEADER}), found {len(fields)}"
        stamp, ident, extended, remote, error, dlc_text, data = fields
        try:
            ts = float(stamp)
        except ValueError:
            return f"timestamp {stamp!r} is not a number"
        if error.strip() == "1":
            record = errormap.UNCLASSIFIED
            self.rows.add_error(ts, record.can_id, record.data, CHANNEL)
            return None
        try:
            can_id = int(ident, 16)
        except ValueError:
            return f"arbitration_id {ident!r} is not hexadecimal"
        is_ext = extended.strip() == "1"
        if not 0 <= can_id <= (CAN_EFF_MASK if is_ext else CAN_SFF_MASK):
            kind = "an extended" if is_ext else "a standard"
            return f"arbitration_id {ident!r} is out of range for {kind} frame"
        if not dlc_text.strip().isdigit():
            return f"dlc {dlc_text!r} is not a number"
        dlc = int(dlc_text)
        try:
            payload = b64decode(data.strip(), validate=True)
        except (binascii.Error, ValueError):
            return f"data {data!r} is not base64"
        flags = EXTENDED if is_ext else 0
        if remote.strip() == "1":
            self.rows.add(ts, can_id, flags | REMOTE, min(dlc, 64), b"", CHANNEL)
            return None
        if len(payload) > 8:
            return f"{len(payload)} data bytes in one frame (python-can's CSV format has no CAN FD)"
        self.rows.add(ts, can_id, flags, len(payload), payload, CHANNEL)
        return None
