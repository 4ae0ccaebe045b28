"""candump *screen* output (``candump can0``, ``-t a|z|d|A``) saved to a file, via cantools.

cantools' ``logreader`` already recognizes these line layouts; we use its patterns (so the
layouts stay the well-kept library's) and read error frames ourselves, because cantools
skips them.  Screen output comes from SocketCAN, so an error frame's identifier *is* the
SocketCAN class bits (``20000004`` = ``CAN_ERR_FLAG | CAN_ERR_CRTL``).

Timestamps: ``-t a`` prints epoch seconds, ``-t z`` seconds since the first frame, ``-t d``
the gap to the previous frame (summed here), ``-t A`` a local date and time (read as this
machine's local time).  Output without timestamps cannot be analyzed in time and is refused
by the detector with the command that records a candump ``-L`` log instead.
"""

from __future__ import annotations

import datetime
import itertools
import re
from dataclasses import dataclass

from candiag.capture.formats.rows import EXTENDED, FD, REMOTE, LineReader, Sink, hex_bytes
from candiag.ingest.frames import CAN_EFF_MASK, CAN_ERR_FLAG, CAN_ERR_MASK

NAME = "candump screen output"
_EPOCH_FLOOR = 662688000  # cantools' own threshold between -t a (epoch) and -t z/-t d


@dataclass(frozen=True)
class Layout:
    """Which candump screen layout a file has (from :func:`detect`)."""

    pattern: re.Pattern[str]
    timestamps: str  # "none", "absolute" (-t a), "zero" (-t z), "delta" (-t d), "date" (-t A)

    @property
    def description(self) -> str:
        return {
            "none": "without timestamps",
            "absolute": "with -t a timestamps",
            "zero": "with -t z timestamps",
            "delta": "with -t d timestamps",
            "date": "with -t A timestamps",
        }[self.timestamps]


def _patterns() -> list[tuple[re.Pattern[str], str]]:
    from cantools import logreader

    return [
        (logreader.CandumpTimestampedPattern.pattern, "seconds"),
        (logreader.CandumpAbsoluteLogPattern.pattern, "date"),
        (logreader.CandumpDefaultPattern.pattern, "none"),
    ]


def detect(lines: list[str]) -> Layout | None:
    """The screen layout of these first lines, or None when they are not screen output."""
    for pattern, kind in _patterns():
        matches = [m for m in map(pattern.match, lines) if m]
        if not matches or len(matches) < max(1, len(lines) // 2):
            continue
        if kind != "seconds":
            return Layout(pattern, kind)
        stamps = [float(m.group("timestamp")) for m in matches]
        if stamps[0] >= _EPOCH_FLOOR:
            return Layout(pattern, "absolute")
        ordered = all(b >= a for a, b in itertools.pairwise(stamps))
        return Layout(pattern, "zero" if ordered else "delta")
    return None


class ScreenReader(LineReader):
    """Reads candump screen lines into batches of at most ``chunk`` rows."""

    prefix = NAME

    def __init__(self, sink: Sink, channels: list[str], chunk: int, layout: Layout) -> None:
        super().__init__(sink, channels, chunk)
        self.layout = layout
        self._clock = 0.0

    def read_line(self, line: str) -> str | None:
        return self._line(line.rstrip()) if line.strip() else None

    def _time(self, match: re.Match[str]) -> float | str:
        text = match.group("timestamp")
        if self.layout.timestamps == "date":
            try:
                return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").timestamp()
            except ValueError:
                return f"date {text!r} is not YYYY-MM-DD HH:MM:SS.ffffff"
        value = float(text)
        if self.layout.timestamps == "delta":
            self._clock += value
            return self._clock
        return value

    def _line(self, line: str) -> str | None:
        match = self.layout.pattern.match(line)
        if match is None:
            return f"does not match the layout of the first lines ({self.layout.description})"
        ts = self._time(match) if self.layout.timestamps != "none" else 0.0
        if isinstance(ts, str):
            return ts
        ident = match.group("can_id")
        raw_id = int(ident, 16)
        data = match.group("can_data")
        payload = b"" if data == "remote request" else hex_bytes(data.split())
        if isinstance(payload, str):
            return payload
        channel = match.group("channel")
        if match.group("error_frame") or (len(ident) == 8 and raw_id & CAN_ERR_FLAG):
            self.rows.add_error(ts, raw_id & CAN_ERR_MASK, payload[:8].ljust(8, b"\0"), channel)
            return None
        flags = EXTENDED if len(ident) > 3 else 0
        if raw_id > CAN_EFF_MASK:
            return f"identifier {ident} is above 1FFFFFFF"
        if data == "remote request":
            length = int(re.search(r"\[(\d+)\]", line).group(1))  # type: ignore[union-attr]
            self.rows.add(ts, raw_id, flags | REMOTE, min(length, 8), b"", channel)
            return None
        if len(payload) > 8:
            flags |= FD
        self.rows.add(ts, raw_id, flags, len(payload), payload, channel)
        return None
