"""PEAK TRC trace files: python-can's per-version row parsers, our loop, error rows kept.

python-can's ``TRCReader`` (4.6.1) knows the header and the column layouts of versions 1.0,
1.1, 1.3, 2.0 and 2.1; we reuse its header parsing and its row parsers for data and remote
frames.  We own the loop because python-can's silently drops a row it cannot parse and every
row type but data/remote: here a bad row is reported (line number, reason) and skipped, and
the other row types are accounted for.  What PEAK's "PEAK CAN TRC File Format" document
establishes about them (as far as its public text could be checked, docs/capture-formats.md):

* ``ER`` (2.x) and ``Error`` / ``ERROR`` rows (1.x) are error frames.  The meaning of their
  data bytes could not be verified from the document, so they are **unclassified** error
  frames: counted, never decoded by guess.
* ``ST`` (hardware status), ``EC`` (error counter change), ``Warng`` (1.x bus warnings) and
  ``EV`` (user events) are not frames: counted by kind and reported, not mapped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from candiag.capture.formats import errormap
from candiag.capture.formats.rows import LineReader, Sink
from candiag.errors import CaptureError
from candiag.ingest.frames import FrameBatch

NAME = "TRC"
_DATA_TYPES = frozenset({"DT", "FD", "FB", "FE", "BI", "RR"})
_NOT_FRAMES = {
    "ST": "hardware status",
    "EC": "error counter change",
    "EV": "user event",
    "Warng": "bus warning",
}
_SUPPORTED = ("1.0", "1.1", "1.3", "2.0", "2.1")
_BAD_INT = re.compile(r"invalid literal for int\(\) with base (\d+): '(.*)'")


class _Lines:
    """The text lines python-can's header parser iterates, with their file line numbers."""

    def __init__(self, lines: Iterable[tuple[int, str]]) -> None:
        self._it = iter(lines)
        self.number = 0
        self.version = ""  # as the file announces it (python-can maps 1.2 to "unknown")

    def __iter__(self) -> Iterator[str]:
        for number, text in self._it:
            self.number = number
            if text.startswith(";$FILEVERSION="):
                self.version = text.split("=", 1)[1].strip()
            yield text

    def close(self) -> None:
        pass


def _reason(err: Exception) -> str:
    """python-can's exception text as words about the row."""
    text = str(err)
    bad = _BAD_INT.match(text)
    if bad:
        kind = "hexadecimal" if bad.group(1) == "16" else "a number"
        return f"{bad.group(2)!r} is not {kind}"
    if "fromhex" in text:
        return "data bytes are not hexadecimal"
    if isinstance(err, IndexError):
        return "the row has fewer columns than the file's layout"
    if isinstance(err, KeyError):
        return f"the file's $COLUMNS lack column {text}"
    return text or type(err).__name__


class TrcReader(LineReader):
    """Reads TRC lines into batches of at most ``chunk`` rows."""

    prefix = NAME

    def __init__(self, sink: Sink, channels: list[str], chunk: int, where: str) -> None:
        super().__init__(sink, channels, chunk)
        self.where = where
        self.version = ""
        self._reader: Any = None  # python-can's TRCReader, for its header and row parsers

    def batches(self, lines: Iterable[tuple[int, str]]) -> Iterator[FrameBatch]:
        from can.io.trc import TRCReader

        source = _Lines(lines)
        self._reader = reader = TRCReader(source)  # type: ignore[arg-type]
        try:
            first = reader._extract_header()
        except (ValueError, NotImplementedError) as err:
            raise CaptureError(
                f"{self.where}: TRC header not usable ({err}); save the trace again as TRC 2.1"
            ) from err
        self.version = source.version
        if self.version and self.version not in _SUPPORTED:
            raise CaptureError(
                f"{self.where}: TRC version {self.version} is not supported (1.0, 1.1, 1.3, 2.0 "
                "and 2.1 are); convert it to 2.1 with PEAK's PCAN-View or Trace converter"
            )
        self.prefix = f"{NAME} {self.version or '1.0'}"
        pending = [(source.number, first)] if first else []
        yield from super().batches(_chain(pending, source))

    def read_line(self, line: str) -> str | None:
        reader, text = self._reader, line.strip()
        if not text or text.startswith(";"):
            return None
        cols = tuple(text.split(maxsplit=reader._num_columns))
        kind = _row_type(reader, cols)
        if kind in _NOT_FRAMES:
            self.sink.not_a_frame(f"{NAME} {kind} rows ({_NOT_FRAMES[kind]}, not mapped)")
            return None
        if kind in ("ER", "Error", "ERROR"):
            ts, channel = _time_and_bus(reader, cols)
            if ts is None:
                return "error row without a readable time offset"
            record = errormap.UNCLASSIFIED
            self.rows.add_error(ts, record.can_id, record.data, channel)
            return None
        if kind not in _DATA_TYPES and kind not in ("Rx", "Tx", "v1.0"):
            return f"row type {kind!r} is not known"
        try:
            msg = reader._parse_cols(cols)
        except (ValueError, IndexError, KeyError, TypeError) as err:
            return _reason(err)
        if msg is None:
            return "row not understood"
        self.rows.add_message(msg, str(msg.channel if msg.channel is not None else 1))
        return None


def _chain(first: list[tuple[int, str]], source: _Lines) -> Iterator[tuple[int, str]]:
    yield from first
    for text in source:
        yield source.number, text


def _row_type(reader: Any, cols: tuple[str, ...]) -> str:
    """The row type in the column where this version keeps it."""
    from can.io.trc import TRCFileVersion

    version = reader.file_version
    try:
        if version >= TRCFileVersion.V2_0:
            return str(cols[reader.columns["T"]])
        if version == TRCFileVersion.V1_3:
            return cols[3]
        if version == TRCFileVersion.V1_1:
            return cols[2]
        # 1.0: "ERROR" in the data column marks an error row, FFFFFFFF a bus warning.
        if len(cols) > 4 and cols[4] == "ERROR":
            return "ERROR"
        if len(cols) > 2 and cols[2] == "FFFFFFFF":
            return "Warng"
        return "v1.0"
    except (IndexError, KeyError):
        return "?"


def _time_and_bus(reader: Any, cols: tuple[str, ...]) -> tuple[float | None, str]:
    from can.io.trc import TRCFileVersion

    version = reader.file_version
    try:
        offset_ms = float(cols[reader.columns["O"]] if version >= TRCFileVersion.V2_0 else cols[1])
    except (ValueError, IndexError, KeyError):
        return None, "1"
    bus = "1"
    if version >= TRCFileVersion.V2_0 and "B" in reader.columns:
        token = cols[reader.columns["B"]] if len(cols) > reader.columns["B"] else ""
        bus = token if token.isdigit() else "1"
    elif version == TRCFileVersion.V1_3 and cols[2].isdigit():
        bus = cols[2]
    start = reader._start_time if version >= TRCFileVersion.V1_1 else 0.0
    return offset_ms / 1000 + start, str(int(bus))
