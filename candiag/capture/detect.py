"""What a capture is: by its content first, its file name second, and why.

The first few KiB are enough: binary formats have a signature (BLF ``LOGG``, MDF ``MDF``),
text formats a header or a line shape.  When content and suffix disagree, content wins and
the reason says both ("suffix .log but content is ASC ...").  Formats that are recognized but
cannot be read (candump screen output without timestamps, numbered lines) are refused with
a message naming what the file is and how to convert it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

from candiag.capture.formats import screen

SUFFIXES = {
    ".log": "candump",
    ".candump": "candump",
    ".asc": "asc",
    ".blf": "blf",
    ".trc": "trc",
    ".csv": "csv",
    ".mf4": "mf4",
}
NAMES = {
    "candump": "candump -L",
    "asc": "Vector ASC",
    "blf": "Vector BLF",
    "trc": "PEAK TRC",
    "csv": "python-can CSV",
    "mf4": "ASAM MDF 4",
    "candump-screen": "candump screen output",
}
_SNIFF_LINES = 40

_CANDUMP_L = re.compile(r"\(\d+(?:\.\d+)?\)\s+\S+\s+[0-9A-Fa-f]+#")
_NUMBERED_CANDUMP = re.compile(r"\d+[\s:.)\]|]+\(\d+(?:\.\d+)?\)\s+\S+\s+[0-9A-Fa-f]+#")
_ASC_HEADER = re.compile(
    r"(date\s+\w+|base\s+(hex|dec)\b|(no\s+)?internal\s+events\s+logged|begin\s+triggerblock)",
    re.IGNORECASE,
)
_ASC_EVENT = re.compile(
    r"\d+\.\d+\s+(\d+\s+\S+\s+(Rx|Tx)\b|CANFD\s+\d+|\d+\s+ErrorFrame|Start of measurement"
    r"|CAN\s+\d+\s+Status:)"
)
_TRC_V1_ROW = re.compile(r"\d+\)\s+\d+(\.\d+)?\s+")
CSV_HEADER = "timestamp,arbitration_id,extended,remote,error,dlc,data"


@dataclass(frozen=True)
class Detected:
    """A detected format: one of :data:`NAMES`' keys, and why."""

    format: str
    reason: str
    layout: screen.Layout | None = None


class Refused(Exception):
    """Recognized, but not a capture candiag can read: the message says what and how."""


def suffix_format(name: str) -> tuple[str | None, str]:
    """The format a file name's suffix announces (``.gz`` looked through), and the suffix."""
    lower = name.lower()
    base = lower[:-3] if lower.endswith(".gz") else lower
    suffix = PurePath(base).suffix
    return SUFFIXES.get(suffix), suffix


def _quote(line: str) -> str:
    return repr(line if len(line) <= 60 else line[:57] + "...")


def content_format(head: bytes) -> Detected | None:
    """The format the first bytes show, or None when they show none we know."""
    if head.startswith(b"LOGG"):
        return Detected("blf", "content: starts with the BLF signature 'LOGG'")
    if head.startswith(b"MDF "):
        return Detected("mf4", "content: starts with the MDF identification block 'MDF'")
    text = head.decode("latin-1")
    lines = [ln.strip() for ln in text.replace("\r", "\n").split("\n") if ln.strip()]
    lines = lines[:_SNIFF_LINES]
    if len(lines) > 1 and head and not head.endswith((b"\n", b"\r")):
        lines = lines[:-1]  # the last line may be cut by the sniff window
    for line in lines:
        found = _line_format(line, lines)
        if found is not None:
            return found
    return None


def _line_format(line: str, lines: list[str]) -> Detected | None:
    quoted = _quote(line)
    if line.replace(" ", "") == CSV_HEADER:
        return Detected("csv", f"content: line {quoted} is python-can's CSV header")
    if line.startswith(";$FILEVERSION") or (line.startswith(";") and "PCAN" in line):
        return Detected("trc", f"content: line {quoted} is a PEAK trace header")
    if _TRC_V1_ROW.match(line):
        return Detected("trc", f"content: line {quoted} is a PEAK trace (TRC 1.x) row")
    if _ASC_HEADER.match(line):
        return Detected("asc", f"content: line {quoted} is an ASC header")
    if _ASC_EVENT.match(line):
        return Detected("asc", f"content: line {quoted} is an ASC event")
    if _CANDUMP_L.match(line):
        return Detected("candump", f"content: line {quoted} is a candump -L log line")
    if _NUMBERED_CANDUMP.match(line):
        raise Refused(
            f"every line starts with a line number before a candump -L record (first: "
            f"{quoted}), as `cat -n` or an editor export writes; remove the numbers, e.g. "
            "sed -E 's/^[[:space:]]*[0-9]+[^(]*//' FILE > fixed.log"
        )
    layout = screen.detect(lines)
    if layout is not None and layout.pattern.match(line):
        if layout.timestamps == "none":
            raise Refused(
                "this is candump screen output without timestamps (e.g. 'candump can0'); "
                "without time it cannot be analyzed: record with candump -L can0 > x.log "
                "(or candump -ta) instead"
            )
        return Detected(
            "candump-screen",
            f"content: line {quoted} is candump screen output {layout.description}",
            layout,
        )
    return None


def detect(name: str, head: bytes) -> Detected | None:
    """Content first, then the suffix of ``name``; None when neither says anything."""
    by_suffix, suffix = suffix_format(name)
    found = content_format(head)
    if found is None:
        if by_suffix is None:
            return None
        return Detected(by_suffix, f"suffix {suffix} (content not recognized in the first lines)")
    if by_suffix == found.format:
        return Detected(found.format, f"suffix {suffix}; {found.reason}", found.layout)
    if by_suffix is not None:
        reason = (
            f"suffix {suffix} but {found.reason.removeprefix('content: ')} ({NAMES[found.format]})"
        )
        return Detected(found.format, reason, found.layout)
    return found
