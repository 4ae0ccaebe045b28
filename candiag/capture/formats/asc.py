"""Vector ASC text logs, read line by line; a bad line is skipped and reported, never the rest.

We own the line loop instead of using python-can's ``ASCReader`` because that reader
(4.6.1) stops at the first line it cannot parse, drops everything on ``ErrorFrame`` lines
(ECC, error code, the words of a CAN FD error frame) and ignores chip status lines.  Frame
lines are read with the same semantics as python-can's reader (hex/dec base from the header,
classic DLC codes above 8 meaning 8 bytes, the CAN FD column layout with an optional symbolic
name, data length 0 on a ``CANFD`` line read as a remote frame); a test holds the two readers
together on python-can's own sample files.  Differences, each documented in
docs/capture-formats.md: channels keep the file's numbering (``1``, ``2``, ... as in
CANalyzer; python-can subtracts one), ``TxRq`` lines (transmit requests, not frames on the
bus) are counted and skipped, and error and status lines are mapped by
:mod:`candiag.capture.formats.errormap`.
"""

from __future__ import annotations

import re

from candiag.capture.formats import errormap
from candiag.capture.formats.rows import BRS, ESI, EXTENDED, FD, REMOTE, LineReader, Sink, hex_bytes
from candiag.ingest.frames import CAN_EFF_MASK, CAN_SFF_MASK, FD_DLC_TO_LEN

NAME = "ASC"
_FD_LENGTHS = frozenset(FD_DLC_TO_LEN)
_EVENT = re.compile(r"(\d+(?:\.\d+)?)\s+(\S.*)")
_BASE = re.compile(r"base\s+(hex|dec)(?:\s+timestamps\s+(absolute|relative))?", re.IGNORECASE)
_HEADER = re.compile(
    r"(date\s|(no\s+)?internal\s+events\s+logged|begin\s+triggerblock|end\s+triggerblock|//|;)",
    re.IGNORECASE,
)
_CHIP_STATUS = re.compile(
    r"CAN\s+(\d+)\s+Status:\s*(.*?)(?:\s*-\s*TxErr:\s*(\d+)\s+RxErr:\s*(\d+))?\s*$",
    re.IGNORECASE,
)
_ECC = re.compile(r"ECC:\s*([01]{8})\b")
_KEY_VALUE = re.compile(r"(\w+)\s*=\s*(0x[0-9A-Fa-f]+|\d+)")
_NOT_ACK = re.compile(r"not\s+acknowledge", re.IGNORECASE)
_DIRECTIONS = ("Rx", "Tx")
# The common line, a classic data frame in hex, in one match (the general parser below gives
# the same frame, and the reasons when a line is wrong).
_CLASSIC_HEX = re.compile(
    r"\s*(\d+\.\d+)\s+(\d+)\s+([0-9A-Fa-f]{1,8})([xX]?)\s+(?:Rx|Tx)\s+d\s+([0-9A-Fa-f])"
    r"((?:\s+[0-9A-Fa-f]{2}(?![0-9A-Za-z]))*)"
)


class AscReader(LineReader):
    """Reads ASC lines into batches of at most ``chunk`` rows."""

    prefix = NAME

    def __init__(self, sink: Sink, channels: list[str], chunk: int) -> None:
        super().__init__(sink, channels, chunk)
        self.base = 16
        self.relative = False  # "timestamps relative": each time is the gap to the line before
        self._clock = 0.0

    # -- one line ------------------------------------------------------------------------
    def read_line(self, line: str) -> str | None:
        fast = _CLASSIC_HEX.match(line) if self.base == 16 and not self.relative else None
        if fast is not None:
            count = min(FD_DLC_TO_LEN[int(fast.group(5), 16)], 8)
            data = fast.group(6).split()
            if len(data) >= count:
                can_id = int(fast.group(3), 16)
                extended = fast.group(4) != ""
                if can_id <= (CAN_EFF_MASK if extended else CAN_SFF_MASK):
                    payload = bytes.fromhex("".join(data[:count]))
                    self.rows.add(float(fast.group(1)), can_id, EXTENDED if extended else 0,
                                  count, payload, str(int(fast.group(2))))  # fmt: skip
                    return None
        text = line.strip()
        if not text:
            return None
        event = _EVENT.fullmatch(text)
        if event is None:
            return self._header(text)
        stamp = float(event.group(1))
        if self.relative:
            self._clock += stamp
            stamp = self._clock
        return self._event(stamp, event.group(2))

    def _header(self, text: str) -> str | None:
        base = _BASE.match(text)
        if base:
            self.base = 16 if base.group(1).lower() == "hex" else 10
            self.relative = (base.group(2) or "").lower() == "relative"
            return None
        if _HEADER.match(text):
            return None
        return "not an event line (it does not start with a timestamp) nor a header line"

    def _event(self, ts: float, rest: str) -> str | None:
        fields = rest.split()
        head = fields[0]
        if head == "CANFD":
            return self._fd(ts, fields[1:], rest)
        if head == "CAN" and len(fields) > 2 and fields[2].startswith("Status:"):
            return self._chip_status(ts, rest)
        if not head.isdigit():
            if rest != "Start of measurement":  # a marker, not an event worth counting
                self._skip(rest)  # "Log trigger event", "SV: ...", ...
            return None
        if len(fields) < 2:
            return f"nothing after channel {head}"
        channel = str(int(head))
        second = fields[1]
        if second == "ErrorFrame":
            self.rows.add_error(ts, *self._classic_error(rest), channel)
            return None
        if len(fields) > 2 and fields[2] in _DIRECTIONS:
            return self._classic(ts, channel, fields[1:])
        if len(fields) > 2 and fields[2] == "TxRq":
            self.sink.not_a_frame(f"{NAME} TxRq lines (transmit requests, not frames on the bus)")
            return None
        self._skip(" ".join(fields[1:]))
        return None

    def _skip(self, event: str) -> None:
        word = event.split(":", 1)[0].split()[0] if event.split() else event
        self.sink.not_a_frame(f"{NAME} '{word}' events (not CAN frames)")

    # -- frames ---------------------------------------------------------------------------
    def _identifier(self, token: str) -> tuple[int, int] | str:
        extended = token[-1:] in ("x", "X")
        digits = token[:-1] if extended else token
        try:
            value = int(digits, self.base)
        except ValueError:
            kind = "hexadecimal" if self.base == 16 else "decimal"
            return f"identifier {token!r} is not {kind} (a symbolic name cannot be read back)"
        if value < 0 or value > (CAN_EFF_MASK if extended else CAN_SFF_MASK):
            width = "extended identifier" if extended else "standard identifier (no 'x')"
            return f"{width} {token!r} is out of range"
        return value, EXTENDED if extended else 0

    def _classic(self, ts: float, channel: str, fields: list[str]) -> str | None:
        # <id> <Rx|Tx> <d|r> [<dlc> <bytes...>] [Length = ...]
        ident = self._identifier(fields[0])
        if isinstance(ident, str):
            return ident
        can_id, flags = ident
        if len(fields) < 3:
            return "frame line ends after the direction (expected 'd' or 'r')"
        kind = fields[2].lower()
        if kind == "r":
            dlc = 0
            if len(fields) > 3 and fields[3].isdigit():
                dlc = min(int(fields[3], self.base), 8)
            self.rows.add(ts, can_id, flags | REMOTE, dlc, b"", channel)
            return None
        if kind != "d":
            return f"frame type {fields[2]!r} is neither 'd' (data) nor 'r' (remote)"
        if len(fields) < 4:
            return "data frame without a DLC"
        try:
            code = int(fields[3], self.base)
        except ValueError:
            return f"DLC {fields[3]!r} is not a number"
        if code in _FD_LENGTHS and code > 15:
            # Some writers put a CAN FD *length* (e.g. 40 = 64 bytes) in a classic line;
            # python-can keeps 8 of them, we keep them all as the CAN FD frame it must be.
            count, flags = code, flags | FD
        elif 0 <= code <= 15:
            count = min(FD_DLC_TO_LEN[code], 8)
        else:
            return f"DLC {fields[3]!r} is neither a DLC code (0..f) nor a CAN FD length"
        tokens = fields[4 : 4 + count]
        if len(tokens) < count:
            return f"DLC {code} announces {count} data bytes, the line has {len(tokens)}"
        return self._data_frame(ts, can_id, flags, tokens, channel)

    def _fd(self, ts: float, fields: list[str], rest: str) -> str | None:
        # CANFD <ch> <Rx|Tx> <id> [name] <brs> <esi> <dlc> <length> <bytes...> ...
        if len(fields) < 3 or not fields[0].isdigit():
            return "CANFD line without a channel number and a direction"
        channel = str(int(fields[0]))
        if fields[2] == "ErrorFrame":
            record = errormap.not_acknowledged() if _NOT_ACK.search(rest) else errormap.UNCLASSIFIED
            self.rows.add_error(ts, record.can_id, record.data, channel)
            return None
        if fields[1] not in _DIRECTIONS:
            if fields[1] == "TxRq":
                self.sink.not_a_frame(
                    f"{NAME} TxRq lines (transmit requests, not frames on the bus)"
                )
                return None
            return f"CANFD direction {fields[1]!r} is neither Rx nor Tx"
        ident = self._identifier(fields[2])
        if isinstance(ident, str):
            return ident
        can_id, flags = ident
        cols = fields[3:]
        if cols and not cols[0].isdigit():
            cols = cols[1:]  # the symbolic name of the message
        if len(cols) < 4:
            return "CANFD line ends before BRS, ESI, DLC and data length"
        brs, esi, dlc_text, length_text = cols[:4]
        try:
            code = int(dlc_text, 16)
            length = int(length_text)
        except ValueError:
            return f"CANFD DLC {dlc_text!r} or data length {length_text!r} is not a number"
        if not 0 <= code <= 15:
            return f"CANFD DLC {dlc_text!r} is outside 0..f"
        flags |= FD | (BRS if brs == "1" else 0) | (ESI if esi == "1" else 0)
        if length == 0:  # python-can reads this as a remote frame of the DLC code
            self.rows.add(ts, can_id, flags | REMOTE, code, b"", channel)
            return None
        if length not in _FD_LENGTHS:
            return f"CANFD data length {length} is not a CAN FD length"
        tokens = cols[4 : 4 + length]
        if len(tokens) < length:
            return f"CANFD data length {length} announced, the line has {len(tokens)} bytes"
        return self._data_frame(ts, can_id, flags, tokens, channel)

    def _data_frame(
        self, ts: float, can_id: int, flags: int, tokens: list[str], channel: str
    ) -> str | None:
        """A data frame of the bytes ``tokens`` (as many as announced), or why it is not one."""
        payload = hex_bytes(tokens, self.base)
        if isinstance(payload, str):
            return payload
        self.rows.add(ts, can_id, flags, len(payload), payload, channel)
        return None

    # -- errors and status ----------------------------------------------------------------
    def _classic_error(self, rest: str) -> tuple[int, bytes]:
        ecc = _ECC.search(rest)
        if ecc:
            record = errormap.from_sja1000_ecc(int(ecc.group(1), 2))
            return record.can_id, record.data
        values = {key.lower(): int(value, 0) for key, value in _KEY_VALUE.findall(rest)}
        if "flags" in values and "code" in values:
            record = errormap.from_vector_flags(values["flags"], values["code"])
            return record.can_id, record.data
        return errormap.UNCLASSIFIED.can_id, errormap.UNCLASSIFIED.data

    def _chip_status(self, ts: float, rest: str) -> str | None:
        match = _CHIP_STATUS.match(rest)
        if match is None:
            return "CAN status line not understood"
        state = errormap.state_from_words(match.group(2))
        if state is None:
            self.sink.not_a_frame(f"{NAME} chip status lines without a known controller state")
            return None
        tec = int(match.group(3)) if match.group(3) else None
        rec = int(match.group(4)) if match.group(4) else None
        record = errormap.controller_state(state, tec, rec)
        self.rows.add_error(ts, record.can_id, record.data, str(int(match.group(1))))
        return None
