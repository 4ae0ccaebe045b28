"""The daemon's view of a bus reader: :class:`candiag.ingest.live.BusReader` per bus.

The reader thread receives (listen-only, reconnecting with backoff); the
processing loop drains it.  This adapter gives the daemon the few properties it
needs (``up``, ``last_error``, ``dropped``) in the daemon's vocabulary.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from candiag.config.model import BusConfig
from candiag.health.linkstats import InterfaceDropCounter, LinkStats, read_link_stats
from candiag.ingest.frames import FrameBatch
from candiag.ingest.live import BusReader

# Large batches amortise the per-batch cost of decoding and health (bench_daemon.py);
# the processing loop drains every processing_interval_s anyway.
MAX_BATCH = 16_384
BATCH_INTERVAL_S = 0.1
# How often a SocketCAN link's kernel statistics are read (``ip -details -statistics``).
LINK_STATS_INTERVAL_S = 5.0


class LinkStatsPoller:
    """Reads a SocketCAN link's own statistics every few seconds (a thread).

    The second health source: the kernel's controller state, TEC/REC and bus-off/
    restart counters (some drivers send no bus-error frames at all), and the frames
    the interface dropped before any socket saw them.  ``ip`` runs in this thread so
    the processing loop never waits for it.
    """

    def __init__(self, device: str, interval: float = LINK_STATS_INTERVAL_S) -> None:
        self.device = device
        self.interval = interval
        self.latest: LinkStats | None = None
        self.updates = 0
        self.dropped = InterfaceDropCounter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"candiag-netlink-{device}")

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            stats = read_link_stats(self.device, timeout=min(2.0, self.interval))
            if stats is not None:
                self.dropped.update(stats)
                self.latest = stats
                self.updates += 1
            self._stop.wait(self.interval)


class ReaderSource:
    """A started-on-demand :class:`BusReader` seen as a daemon frame source."""

    def __init__(self, reader: BusReader, link: LinkStatsPoller | None = None) -> None:
        self.reader = reader
        self.link = link

    def start(self) -> None:
        self.reader.start()
        if self.link is not None:
            self.link.start()

    def stop(self, timeout: float = 3.0) -> None:
        if self.link is not None:
            self.link.stop(timeout)
        self.reader.stop(timeout)

    @property
    def link_stats(self) -> tuple[int, LinkStats] | None:
        """(update number, latest snapshot) of the kernel's link statistics, if read."""
        if self.link is None or self.link.latest is None:
            return None
        return self.link.updates, self.link.latest

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
        # "interface": drops the kernel reports for the link (netlink rx dropped +
        # over_errors) or the driver; "socket": frames lost on the receive side before
        # processing: the kernel dropped them because the reader's socket receive buffer
        # was full (SO_RXQ_OVFL, bulk SocketCAN path), or the reader's queue overflowed.
        interface = self.link.dropped.total if self.link else 0
        return {
            "interface": interface,
            "socket": self.reader.dropped_frames + self.reader.queue_dropped,
        }


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
    link = LinkStatsPoller(bus.channel) if bus.interface == "socketcan" else None
    return ReaderSource(reader, link)
