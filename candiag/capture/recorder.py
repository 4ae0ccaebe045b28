"""Recording a live bus to candump ``-L`` files: a :class:`BusReader` drained into a writer.

The loop runs on the caller's thread (the CLI's main thread, so signals can stop
it): every ``poll_interval`` it drains the reader, writes the frames, and lets
the writer flush (at least once per second) and rotate.  Error frames are kept
exactly (class bits and payload, ``20000040#...``), unlike python-can's
``.log`` writer.  :func:`live_bus_metadata` says what a recording of a live bus can
truthfully record about it (:mod:`candiag.capture.metadata`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from candiag.capture import CandumpWriter
from candiag.capture.metadata import BusMetadata
from candiag.errors import RecordingError
from candiag.health.linkstats import LinkStats, read_link_stats
from candiag.ingest.filters import FrameFilter
from candiag.ingest.live import LISTEN_ONLY_KWARGS, BusReader


def live_bus_metadata(
    interface: str,
    channel: str,
    bitrate: int | None,
    *,
    data_bitrate: int | None = None,
    fd: bool = False,
    link_stats: Callable[[str], LinkStats | None] = read_link_stats,
) -> BusMetadata:
    """What candiag knows of a live bus it records, and nothing it only assumes.

    SocketCAN: python-can does not set the bitrate (``ip link`` does), so it is the
    kernel's (``ip -details link show``), ``None`` where the kernel has none (vcan) or
    ``ip`` cannot tell.  Other adapters run at the ``bitrate`` candiag opened them with;
    ``None`` means the driver's own default, which candiag does not know.
    ``listen_only`` is True where candiag switched the controller to listen-only, ``None``
    where python-can has no such switch (candiag still never transmits).
    """
    if interface == "socketcan":
        stats = link_stats(channel)
        bitrate = stats.bitrate if stats is not None else None
        data_bitrate = stats.data_bitrate if stats is not None and fd else None
    elif not fd:
        data_bitrate = None
    return BusMetadata(
        channel=channel,
        interface=interface,
        bitrate=bitrate,
        data_bitrate=data_bitrate,
        listen_only=True if interface in LISTEN_ONLY_KWARGS else None,
    )


@dataclass
class RecordSummary:
    """What a recording produced."""

    frames: int = 0
    error_frames: int = 0
    files: list[Path] = field(default_factory=list)
    duration: float = 0.0
    reconnects: int = 0
    filtered_out: int = 0  # frames a --filter did not keep
    bus_down_at_end: bool = False
    last_error: str = ""

    def text(self) -> str:
        """The human summary printed by ``candiag record``."""
        files = ", ".join(str(p) for p in self.files) or "(none)"
        lines = [
            f"recorded {self.frames} frames ({self.error_frames} error frames) "
            f"in {self.duration:.1f} s",
            f"files: {files}",
        ]
        if self.filtered_out:
            lines.append(f"{self.filtered_out} frames left out by the filter")
        if self.reconnects:
            lines.append(f"the bus was lost and reopened {self.reconnects} times")
        if self.last_error:
            state = "down at the end" if self.bus_down_at_end else "last problem"
            lines.append(f"bus {state}: {self.last_error}")
        return "\n".join(lines)


def record(
    reader: BusReader,
    writer: CandumpWriter,
    *,
    duration: float | None = None,
    stop: threading.Event | None = None,
    poll_interval: float = 0.1,
    frame_filter: FrameFilter | None = None,
) -> RecordSummary:
    """Record until ``duration`` seconds passed or ``stop`` is set; returns the summary.

    ``reader`` must be in drain mode (no ``on_batch``); it is started here if it
    is not running, and always stopped, and ``writer`` always closed, on return.
    A :class:`RecordingError` (disk full...) stops the recording and propagates
    after both are closed.  With ``frame_filter`` only the frames it keeps are written
    (and counted); the others are counted in ``filtered_out``.
    """
    stop = stop or threading.Event()
    summary = RecordSummary()
    started = time.monotonic()
    if not reader.running:
        reader.start()
    try:
        while not stop.wait(poll_interval):
            _write_pending(reader, writer, summary, frame_filter)
            if duration is not None and time.monotonic() - started >= duration:
                break
    except RecordingError:
        reader.stop()
        _close_quietly(writer)
        raise
    reader.stop()
    _write_pending(reader, writer, summary, frame_filter)
    writer.close()
    summary.duration = time.monotonic() - started
    summary.files = list(writer.files)
    summary.reconnects = reader.reconnects
    summary.last_error = reader.last_error
    summary.bus_down_at_end = reader.down_since is not None
    return summary


def _write_pending(
    reader: BusReader,
    writer: CandumpWriter,
    summary: RecordSummary,
    frame_filter: FrameFilter | None = None,
) -> None:
    batch = reader.drain()
    if frame_filter is not None and len(batch):
        kept = frame_filter.apply(batch)
        summary.filtered_out += len(batch) - len(kept)
        batch = kept
    writer.write(batch)  # also when empty: lets the writer flush and rotate on time
    summary.frames += len(batch)
    summary.error_frames += int(batch.is_error.sum())


def _close_quietly(writer: CandumpWriter) -> None:
    # The first RecordingError is the one the user needs; a second one while
    # closing the same broken file would only hide it.
    try:
        writer.close()
    except RecordingError:
        pass
