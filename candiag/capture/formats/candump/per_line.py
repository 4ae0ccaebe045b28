"""Tier 3, the per-line tier: one line at a time in Python, for what the vectorized tiers leave.

Runs last, on the lines neither :mod:`.fixed_layout` nor :mod:`.shape_groups` took: remote
frames (``123#R``, ``123#R5``), CAN FD (``123##1AABB``), the ``_`` DLC suffix after 8 data
bytes, ``.`` separators in the data, timestamps or identifiers of unusual widths, and every
malformed line.  It exists because those lines are rare (a real capture has none or a few),
so they are not worth a vectorized decoder, and because it is the one place that says in
words *why* a line is malformed (each reason is tested, ``tests/test_candump.py``).  It
accepts every line the other tiers accept and decodes it identically.
"""

from __future__ import annotations

import math
import re

import numpy as np

from candiag.capture.formats.candump.chunk import I64, MAX_TEXT, U8, ChunkArrays, Rows
from candiag.capture.stats import MalformedLine
from candiag.ingest.frames import (
    CAN_EFF_FLAG,
    CAN_EFF_MASK,
    CAN_ERR_FLAG,
    CAN_RTR_FLAG,
    CAN_SFF_MASK,
    CLASSIC_WIDTH,
    FD_DLC_TO_LEN,
    FLAG_BRS,
    FLAG_ERROR,
    FLAG_ESI,
    FLAG_EXTENDED,
    FLAG_FD,
    FLAG_REMOTE,
    ChannelTable,
)

_FD_LENGTHS = frozenset(FD_DLC_TO_LEN)
_CAN_RTR_EFF_FLAGS = CAN_EFF_FLAG | CAN_RTR_FLAG
# Like the vectorized tiers (at most 18 digits in all): whole seconds then fit int64 when written.
_MAX_TIMESTAMP = 1e17


def decode_per_line(
    buf: U8,
    starts: I64,
    ends: I64,
    rows: Rows,
    out: ChunkArrays,
    channels: ChannelTable,
    first_line: int,
    line_index: Rows | None = None,
) -> list[MalformedLine]:
    """Decode ``rows`` one line at a time into ``out``; return the malformed ones.

    ``line_index`` maps row ``i`` to its line in the chunk when the rows are a subset.
    """
    malformed: list[MalformedLine] = []
    for i in rows.tolist():
        raw = buf[starts[i] : ends[i]].tobytes()
        parsed = parse_line(raw)
        if isinstance(parsed, str):
            text = raw.decode("utf-8", errors="backslashreplace")[:MAX_TEXT]
            line = first_line + (i if line_index is None else int(line_index[i]))
            malformed.append(MalformedLine(line, parsed, text))
            continue
        ts, channel, can_id, flags, dlc, payload = parsed
        if len(payload) > out.data.shape[1]:
            out.widen()
        out.timestamp[i] = ts
        out.can_id[i] = can_id
        out.flags[i] = flags
        out.dlc[i] = dlc
        if payload:
            out.data[i, : len(payload)] = np.frombuffer(payload, np.uint8)
        out.channel[i] = channels.lookup(channel)
        out.valid[i] = True
    return malformed


_TIMESTAMP_RE = re.compile(r"\((\d+(?:\.\d+)?)\)")
_HEX_RE = re.compile(r"[0-9A-Fa-f]*")
_REMOTE_RE = re.compile(r"[Rr]([0-9A-Fa-f])?(?:_[0-9A-Fa-f])?")

ParsedLine = tuple[float, str, int, int, int, bytes]


def parse_line(raw: bytes) -> ParsedLine | str:
    """Parse one candump ``-L`` line: (timestamp, channel, can_id, flags, dlc, data) or a reason."""
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        return "not text: the line holds non-ASCII bytes (binary data or a corrupted file)"
    if not text:
        return "empty line"
    fields = text.split()
    if len(fields) == 4 and fields[3] in ("R", "T", "r", "t"):
        fields = fields[:3]
    if len(fields) != 3:
        return f"expected 3 fields '(timestamp) channel id#data', found {len(fields)}" + (
            " (is the channel name missing?)" if len(fields) == 2 else ""
        )
    stamp, channel, frame = fields
    match = _TIMESTAMP_RE.fullmatch(stamp)
    if match is None:
        return f"bad timestamp {stamp!r}: expected '(seconds.microseconds)'"
    timestamp = float(match.group(1))
    if not math.isfinite(timestamp):
        return f"bad timestamp {stamp!r}: not a finite number"
    if timestamp >= _MAX_TIMESTAMP:
        return f"bad timestamp {stamp!r}: more than 17 digits of seconds"
    ident, sep, rest = frame.partition("#")
    if not sep:
        return f"no '#' between identifier and data in {frame!r}"
    if len(ident) not in (3, 8):
        return f"identifier {ident!r} must be 3 (standard) or 8 (extended) hex digits, not {len(ident)}"
    if not _HEX_RE.fullmatch(ident):
        return f"identifier {ident!r} is not hexadecimal"
    return _parse_frame(timestamp, channel, int(ident, 16), len(ident) == 8, rest)


def _parse_frame(
    ts: float, channel: str, raw_id: int, extended: bool, rest: str
) -> ParsedLine | str:
    flags = 0
    if not extended:
        if raw_id > CAN_SFF_MASK:
            return f"standard identifier 0x{raw_id:03X} is above 0x7FF"
    elif raw_id & CAN_ERR_FLAG and not raw_id & _CAN_RTR_EFF_FLAGS:
        flags = int(FLAG_ERROR)
    elif raw_id > CAN_EFF_MASK:
        return f"extended identifier 0x{raw_id:08X} is above 0x1FFFFFFF"
    else:
        flags = int(FLAG_EXTENDED)
    can_id = raw_id & CAN_EFF_MASK
    if rest.startswith("##"):
        return "CAN XL frames ('###') are not supported"
    if rest.startswith("#"):
        return _parse_fd(ts, channel, can_id, flags, rest[1:])
    if _REMOTE_RE.fullmatch(rest):
        if flags & FLAG_ERROR:
            return "an error frame cannot be a remote frame"
        dlc = int(rest[1], 16) if len(rest) > 1 and rest[1] != "_" else 0
        if dlc > CLASSIC_WIDTH:
            return f"remote frame length {dlc} is above 8"
        return ts, channel, can_id, flags | int(FLAG_REMOTE), dlc, b""
    body, _, dlc_code = rest.partition("_")
    payload = _hex_payload(body)
    if isinstance(payload, str):
        return payload
    if len(payload) > CLASSIC_WIDTH:
        return f"{len(payload)} data bytes in a classic CAN frame (at most 8; CAN FD uses '##')"
    if dlc_code and (len(payload) != CLASSIC_WIDTH or not _HEX_RE.fullmatch(dlc_code)):
        return f"DLC suffix '_{dlc_code}' is only valid after 8 data bytes"
    return ts, channel, can_id, flags, len(payload), payload


def _parse_fd(ts: float, channel: str, can_id: int, flags: int, rest: str) -> ParsedLine | str:
    if flags & FLAG_ERROR:
        return "an error frame cannot be a CAN FD frame"
    if not rest or not _HEX_RE.fullmatch(rest[0]):
        return "CAN FD frame needs a flags hex digit after '##'"
    fd_flags = int(rest[0], 16)
    payload = _hex_payload(rest[1:])
    if isinstance(payload, str):
        return payload
    if len(payload) not in _FD_LENGTHS:
        return f"{len(payload)} data bytes is not a CAN FD length (0-8, 12, 16, 20, 24, 32, 48, 64)"
    flags |= int(FLAG_FD)
    flags |= int(FLAG_BRS) if fd_flags & 0x1 else 0
    flags |= int(FLAG_ESI) if fd_flags & 0x2 else 0
    return ts, channel, can_id, flags, len(payload), payload


def _hex_payload(body: str) -> bytes | str:
    digits = body.replace(".", "")
    if not _HEX_RE.fullmatch(digits):
        return f"data {body!r} is not hexadecimal"
    if len(digits) % 2:
        return f"data {body!r} has an odd number of hex digits (a byte is cut)"
    return bytes.fromhex(digits)
