"""candump ``-L`` lines arriving on a pipe, read as they come: ``candump -L can0 | candiag monitor -``.

:class:`CaptureReader` reads standard input to its end in large blocks, as ``analyze`` and
``decode`` want; a live view cannot wait for a megabyte.  :class:`StreamReader` reads the
stream line by line on a thread and hands the lines over as :class:`FrameBatch` es when the
consumer drains it, parsed by the same candump reader as a file (malformed lines are counted
in :attr:`StreamReader.stats`, never fatal).  It has the shape of a live bus reader (``start``,
``stop``, ``drain``, ``up``, ``last_error``, ``dropped``), so the monitor treats a pipe as one
more bus, named by its channel.

One channel is watched: the one asked for, else the first line's.  Frames of other channels
are counted (:attr:`StreamReader.other_channels`) and said, never mixed into the watched bus.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from candiag.capture import detect as detection
from candiag.capture.formats.candump import CandumpReader
from candiag.capture.source import MAX_LINE_BYTES, STDIN_NAME
from candiag.capture.stats import CaptureStats
from candiag.errors import CaptureError
from candiag.ingest.frames import ChannelTable, FrameBatch

if TYPE_CHECKING:
    from candiag.health.linkstats import LinkStats

#: Lines parsed at a time by :meth:`StreamReader.drain` (bounds one parse, not the pipe).
CHUNK_LINES = 65_536
#: Bytes of lines kept while nobody drains; beyond, the oldest are dropped and counted.
MAX_PENDING_BYTES = 64 << 20


class StreamReader:
    """Reads candump ``-L`` lines from ``stream`` on a thread named ``candiag-stream``."""

    def __init__(self, stream: BinaryIO, channel: str | None = None, name: str = STDIN_NAME):
        self.stream = stream
        self.name = name
        self.stats = CaptureStats(path=name)
        self.channels = ChannelTable()
        self._parser = CandumpReader(self.stats, self.channels, CHUNK_LINES)
        self.channel = channel
        self.other_channels: collections.Counter[str] = collections.Counter()
        self.queue_dropped = 0
        self._fd = stream.fileno()
        self._rest = b""
        self._lines: list[bytes] = []  # blocks of whole lines, oldest first
        self._pending = 0
        self._lock = threading.Lock()
        self._eof = threading.Event()
        self._error = ""
        self._thread = threading.Thread(target=self._run, name="candiag-stream", daemon=True)

    def first_line(self) -> str:
        """Wait for the stream's first line, check it is candump ``-L`` and keep it.

        Returns the channel watched (the one asked for, else this line's).  Raises
        :class:`CaptureError` when the stream ends first or carries another format.
        """
        line: bytes | None = b""
        while line is not None and not line.strip():
            line = self._next_line()
        if line is None:
            raise CaptureError(
                f"{self.name}: ended before its first line; pipe candump -L lines in, "
                "e.g. candump -L can0 | candiag monitor -"
            )
        found = detection.content_format(line)
        if found is None or found.format != "candump":
            what = f"{found.format} lines" if found is not None else "no capture format known"
            raise CaptureError(
                f"{self.name}: monitor - reads candump -L lines as they arrive, and this is "
                f"{what} ({line[:60]!r}); run `candump -L can0 | candiag monitor -`, or "
                "analyze a stored capture with `candiag analyze -`"
            )
        if self.channel is None:
            words = line.split()
            self.channel = words[1].decode("utf-8", "replace") if len(words) > 1 else "can0"
        self._lines.append(line)
        return self.channel

    def _next_line(self) -> bytes | None:
        """One line (with its end) read straight from the file descriptor (no buffered
        reader: its lock would be held by a blocked thread at exit); None at the end."""
        while b"\n" not in self._rest:
            block = os.read(self._fd, 65_536)
            if not block:
                rest, self._rest = self._rest, b""
                return rest + b"\n" if rest else None
            self._rest += block
            if len(self._rest) > MAX_LINE_BYTES and b"\n" not in self._rest:
                self._rest = self._rest[:MAX_LINE_BYTES]  # a hostile "line": keep its start
        line, _, self._rest = self._rest.partition(b"\n")
        return line + b"\n"

    # -- a frame source ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop handing over; the thread ends at the stream's end (it is a daemon thread:
        a pipe that stays open must not keep the process alive)."""
        self._eof.set()

    @property
    def up(self) -> bool:
        return not self._eof.is_set()

    @property
    def last_error(self) -> str | None:
        if self._error:
            return self._error
        return (
            f"{self.name} ended (the command writing into the pipe stopped)"
            if self._eof.is_set()
            else None
        )

    @property
    def dropped(self) -> Mapping[str, int]:
        return {"interface": 0, "socket": self.queue_dropped}

    @property
    def link_stats(self) -> tuple[int, LinkStats] | None:
        """A piped capture has no kernel link behind it: nothing to read."""
        return None

    def drain(self) -> FrameBatch:
        """The frames of the watched channel that arrived since the last drain."""
        with self._lock:
            lines, self._lines, self._pending = self._lines, [], 0
        if not lines:
            return FrameBatch.empty(channels=[self.channel or "can0"])
        data = b"".join(lines)
        batches = list(self._parser.batches([data]))
        if not batches:
            return FrameBatch.empty(channels=[self.channel or "can0"])
        batch = FrameBatch.concat(batches)
        self.stats.frames += len(batch)
        return self._watched(batch)

    def _watched(self, batch: FrameBatch) -> FrameBatch:
        names = list(batch.channels)
        index = names.index(self.channel) if self.channel in names else -1
        keep = batch.channel == index
        if not keep.all():
            others = batch.channel[~keep]
            values, counts = np.unique(others, return_counts=True)
            for value, count in zip(values.tolist(), counts.tolist(), strict=True):
                self.other_channels[names[value]] += count
        return batch.take(keep)

    def _run(self) -> None:
        try:
            while not self._eof.is_set():
                block = os.read(self._fd, 65_536)
                if not block:
                    if self._rest:
                        with self._lock:
                            self._lines.append(self._rest + b"\n")
                        self._rest = b""
                    break
                data = self._rest + block
                cut = data.rfind(b"\n") + 1
                self._rest = data[cut:][:MAX_LINE_BYTES]
                if cut:
                    with self._lock:
                        self._lines.append(data[:cut])
                        self._pending += cut
                        while self._pending > MAX_PENDING_BYTES and len(self._lines) > 1:
                            old = self._lines.pop(0)
                            self._pending -= len(old)
                            self.queue_dropped += old.count(b"\n")
        except (OSError, ValueError) as err:  # the stream was closed under us
            self._error = f"{self.name}: reading failed: {err}"
        finally:
            self._eof.set()
