"""The live engine's frame sources: :class:`candiag.ingest.live.BusReader` per bus.

The reader thread receives (listen-only, reconnecting with backoff); the engine's
processing loop drains it (:class:`FrameSource` is all the engine asks of a source).
On SocketCAN a :class:`LinkStatsPoller` beside it reads the kernel's own view of the
link (controller state, TEC/REC, interface drops); the engine sees it through
:attr:`FrameSource.link_stats`, whatever front-end runs the engine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

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

# Reads one snapshot of a link: ``(device, timeout) -> LinkStats | None`` (``ip`` by default).
LinkStatsReader = Callable[[str, float], LinkStats | None]


class FrameSource(Protocol):
    """What the live engine needs from a bus reader (:class:`ReaderSource`)."""

    def start(self) -> None: ...
    def stop(self, timeout: float = ...) -> None: ...
    def drain(self) -> FrameBatch: ...
    @property
    def up(self) -> bool: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def dropped(self) -> Mapping[str, int]: ...
    @property
    def link_stats(self) -> tuple[int, LinkStats] | None: ...


ReaderFactory = Callable[[BusConfig], FrameSource]


def _read_with_ip(device: str, timeout: float) -> LinkStats | None:
    return read_link_stats(device, timeout=timeout)


class LinkStatsPoller:
    """Reads a SocketCAN link's own statistics every few seconds (a thread).

    The second health source: the kernel's controller state, TEC/REC and bus-off/
    restart counters (some drivers send no bus-error frames at all), and the frames
    the interface dropped before any socket saw them.  ``ip`` runs in this thread so
    the processing loop never waits for it.
    """

    def __init__(
        self,
        device: str,
        interval: float = LINK_STATS_INTERVAL_S,
        read: LinkStatsReader | None = None,
    ) -> None:
        """``read``: how a snapshot is taken (default: ``ip``; tests script the states)."""
        self.device = device
        self.interval = interval
        self._read = read
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
            timeout = min(2.0, self.interval)
            read = self._read or _read_with_ip
            stats = read(self.device, timeout)
            if stats is not None:
                self.dropped.update(stats)
                self.latest = stats
                self.updates += 1
            self._stop.wait(self.interval)


class ReaderSource:
    """A started-on-demand :class:`BusReader` (and link poller) seen as a frame source."""

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
    link_reader: LinkStatsReader | None = None,
    link_interval: float = LINK_STATS_INTERVAL_S,
) -> ReaderSource:
    """A listen-only reader for ``bus`` (opened by its thread, so never raises on link faults).

    SocketCAN buses get a :class:`LinkStatsPoller`; ``link_reader`` gives any bus one that
    reads through it (a test scripting the kernel's states on a ``virtual`` bus).
    """
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
    link = None
    if bus.interface == "socketcan" or link_reader is not None:
        link = LinkStatsPoller(bus.channel, link_interval, link_reader)
    return ReaderSource(reader, link)
