"""The daemon's view of a bus reader: :class:`candiag.ingest.live.BusReader` per bus.

The reader thread receives (listen-only, reconnecting with backoff); the
processing loop drains it.  This adapter gives the daemon the few properties it
needs (``up``, ``last_error``, ``dropped``) in the daemon's vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from candiag.daemon.config import BusConfig
from candiag.ingest.frames import FrameBatch
from candiag.ingest.live import BusReader

# Large batches amortise the per-batch cost of decoding and health (bench_daemon.py);
# the processing loop drains every processing_interval_s anyway.
MAX_BATCH = 16_384
BATCH_INTERVAL_S = 0.1


class ReaderSource:
    """A started-on-demand :class:`BusReader` seen as a daemon frame source."""

    def __init__(self, reader: BusReader) -> None:
        self.reader = reader

    def start(self) -> None:
        self.reader.start()

    def stop(self, timeout: float = 3.0) -> None:
        self.reader.stop(timeout)

    def drain(self) -> FrameBatch:
        return self.reader.drain()

    @property
    def up(self) -> bool:
        return bool(self.reader.up)

    @property
    def last_error(self) -> str | None:
        return self.reader.last_error or None

    @property
    def dropped(self) -> Mapping[str, int]:
        # "interface": drops the driver/kernel reports; "socket": frames lost on the
        # receive side before processing (the reader's queue overflowed).
        return {"interface": self.reader.dropped_frames, "socket": self.reader.queue_dropped}


def open_reader(
    bus: BusConfig,
    *,
    bus_factory: Callable[[], Any] | None = None,
    backoff_min: float = 0.5,
    backoff_max: float = 30.0,
) -> ReaderSource:
    """A listen-only reader for ``bus`` (opened by its thread, so never raises on link faults)."""
    reader = BusReader(
        bus.interface,
        bus.channel,
        bus.bitrate,
        data_bitrate=bus.data_bitrate,
        fd=bus.fd,
        batch_interval=BATCH_INTERVAL_S,
        max_batch=MAX_BATCH,
        backoff_min=backoff_min,
        backoff_max=backoff_max,
        bus_factory=bus_factory,
    )
    return ReaderSource(reader)
