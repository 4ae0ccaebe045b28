"""One bus's health in one object, and the split of multi-bus batches per channel.

Owns the composition of the health parts for a bus — error-frame summary, bus-state
tracker, exact bus load, sliding windows, id statistics, link statistics — so that
``candiag analyze`` (captures) and the daemon (live buses) feed batches to one place and
read one JSON.  Every figure in :meth:`BusHealth.to_json` says where it came from
(``error_frames``, ``frames``, ``netlink``, ``pcan``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from candiag.health.busload import frame_bits
from candiag.health.busstate import BusStateTracker
from candiag.health.errorframes import ErrorFrameSummary
from candiag.health.ids import IdStats
from candiag.health.jsontypes import JsonObject
from candiag.health.linkstats import InterfaceDropCounter, LinkStats
from candiag.health.windows import BusWindows
from candiag.ingest.frames import FLAG_ERROR, FLAG_REMOTE, FrameBatch

DROP_SOURCES = ("socket", "interface")
# A mean load over less time than this says more about where the capture was cut than
# about the bus; such captures get no load figure, and say why.
MIN_LOAD_SPAN_S = 1.0


def channel_rows(batch: FrameBatch) -> dict[str, npt.NDArray[np.intp] | None]:
    """The rows of each channel of ``batch``, by channel name (``None``: all of them, the
    batch holds one channel)."""
    if len(batch) == 0:
        return {}
    names = batch.channels or ["can0"]
    present = np.flatnonzero(np.bincount(batch.channel))  # small indices: cheaper than unique
    if present.size == 1:
        return {names[int(present[0])]: None}
    return {names[int(c)]: np.flatnonzero(batch.channel == c) for c in present}


def split_by_channel(batch: FrameBatch) -> dict[str, FrameBatch]:
    """The frames of each channel of ``batch``, by channel name."""
    return {
        name: batch if rows is None else batch.take(rows)
        for name, rows in channel_rows(batch).items()
    }


class BusHealth:
    """Everything candiag knows about the health of one bus."""

    def __init__(
        self,
        bus: str,
        bitrate: int | None = None,
        data_bitrate: int | None = None,
        *,
        keep_history: bool = False,
        pcan_error_layout: bool = False,
        track_ids: bool = True,
    ) -> None:
        self.bus = bus
        self.bitrate = bitrate
        self.data_bitrate = data_bitrate or bitrate
        self.pcan_error_layout = pcan_error_layout
        # False when the owner feeds ``ids`` itself (the pipeline merges epochs into it).
        self.track_ids = track_ids
        self.errors = ErrorFrameSummary()
        self.state = BusStateTracker()
        self.windows = BusWindows(bitrate, data_bitrate, keep_history=keep_history)
        self.ids = IdStats()
        self.frames = {"data": 0, "remote": 0, "error": 0}
        self.bits_nominal = 0
        self.bits_data = 0
        self.first_timestamp: float | None = None
        self.first_frame_s = 0.0  # how long the earliest frame took on the wire
        self.last_timestamp: float | None = None
        self.dropped = dict.fromkeys(DROP_SOURCES, 0)
        self.link: LinkStats | None = None
        self._interface_drops = InterfaceDropCounter()

    def update(
        self,
        batch: FrameBatch,
        bits: tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]] | None = None,
    ) -> None:
        """Add a batch of this bus's frames (split multi-bus batches with :func:`split_by_channel`).

        ``bits``: the batch's :func:`~candiag.health.busload.frame_bits`, when the caller
        computed them for a larger batch this one is a slice of.
        """
        if len(batch) == 0:
            return
        if self.pcan_error_layout:
            # Imported here: the PCAN constants come from python-can (start-up cost for
            # every other adapter and for captures, bench/bench_startup.py).
            from candiag.health.pcan import pcan_error_frames_to_socketcan

            batch = pcan_error_frames_to_socketcan(batch)
        if bits is None:
            bits = frame_bits(batch)
        self.errors.update(batch)
        bus_off_times = self.state.update(batch)
        self.windows.update(batch, bits, bus_off_times)
        if self.track_ids:
            self.ids.update(batch)
        errors = int(np.count_nonzero(batch.flags & FLAG_ERROR))
        remote = int(np.count_nonzero((batch.flags & (FLAG_REMOTE | FLAG_ERROR)) == FLAG_REMOTE))
        self.frames["error"] += errors
        self.frames["remote"] += remote
        self.frames["data"] += len(batch) - errors - remote
        self.bits_nominal += int(bits[0].sum(dtype=np.int64))
        self.bits_data += int(bits[1].sum(dtype=np.int64))
        lo, hi = float(batch.timestamp.min()), float(batch.timestamp.max())
        if self.first_timestamp is None or lo < self.first_timestamp:
            self.first_frame_s = self._frame_seconds(batch, bits, int(batch.timestamp.argmin()))
        self.first_timestamp = lo if self.first_timestamp is None else min(self.first_timestamp, lo)
        self.last_timestamp = hi if self.last_timestamp is None else max(self.last_timestamp, hi)

    def _frame_seconds(
        self,
        batch: FrameBatch,
        bits: tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]],
        row: int,
    ) -> float:
        if not self.bitrate or batch.flags[row] & FLAG_ERROR:
            return 0.0
        return int(bits[0][row]) / self.bitrate + int(bits[1][row]) / (
            self.data_bitrate or self.bitrate
        )

    def add_dropped(self, source: str, frames: int) -> None:
        """Frames lost before candiag saw them (``socket``: our receive queue; ``interface``)."""
        if source not in self.dropped:
            raise ValueError(f"drop source must be one of {DROP_SOURCES}, not {source!r}")
        self.dropped[source] += max(0, int(frames))

    def observe_link(self, stats: LinkStats, now: float) -> None:
        """A netlink snapshot: controller state (if it has one) and interface drops."""
        self.link = stats
        self.add_dropped("interface", self._interface_drops.update(stats))
        if stats.state in ("error_active", "error_warning", "error_passive", "bus_off"):
            self.state.observe(stats.state, now, source="netlink")
        elif stats.kind == "can" and not stats.up:
            self.state.observe("down", now, source="netlink")

    def advance(self, now: float) -> None:
        """Live bus: move time to ``now`` (state durations, window expiry)."""
        self.state.advance(now)
        self.windows.advance(now)

    def busy_seconds(self) -> float:
        """Time the frames seen occupy the bus at the configured bitrate(s)."""
        if not self.bitrate:
            return 0.0
        return self.bits_nominal / self.bitrate + self.bits_data / (
            self.data_bitrate or self.bitrate
        )

    def load_span_s(self) -> float | None:
        """The time the frames seen were on the bus: first to last timestamp, counted physically.

        Receivers stamp a frame when it ends, so the first frame began its own length before
        the first timestamp; and the bus needs at least :meth:`busy_seconds` to carry all the
        frames, whatever the timestamps say (host buffering bunches them).  So the load
        over this span never exceeds 1.
        """
        if not self.bitrate or self.first_timestamp is None or self.last_timestamp is None:
            return None
        span = self.last_timestamp - self.first_timestamp + self.first_frame_s
        return max(span, self.busy_seconds())

    def mean_load_ratio(self) -> float | None:
        """Mean load over the whole time seen (captures); ``None`` without a bitrate, or when
        the frames span less than :data:`MIN_LOAD_SPAN_S` (see :meth:`load_note`)."""
        span = self.load_span_s()
        if span is None or span < MIN_LOAD_SPAN_S:
            return None
        return self.busy_seconds() / span

    def load_note(self) -> str | None:
        """Why a load figure is missing or cannot be taken at face value, in words."""
        span = self.load_span_s()
        if not self.bitrate:
            return "no load figure: the bitrate is not known"
        if span is None:
            return "no load figure: no frame seen"
        if span < MIN_LOAD_SPAN_S:
            return (
                f"no load figure: the frames span {_duration(span)}, too short for a mean "
                f"load (at least {MIN_LOAD_SPAN_S:g} s is needed)"
            )
        over = self.windows.overfull_seconds
        if over:
            return (
                f"{over} second(s) hold more frame bits than the bus carries at "
                f"{self.bitrate:,} bit/s (up to {self.windows.max_raw_ratio_1s_seen:.0%}): "
                "the capture's timestamps are host arrival times, not bus time, or the "
                "bitrate is wrong; loads are capped at 100 %"
            )
        return None

    def to_json(self) -> JsonObject:
        out: dict[str, Any] = {
            "bus": self.bus,
            "bitrate": self.bitrate,
            "data_bitrate": self.data_bitrate,
            "first_timestamp": self.first_timestamp,
            "last_timestamp": self.last_timestamp,
            "frames": {"source": "frames", **self.frames},
            "bits": {
                "source": "frames",
                "nominal": self.bits_nominal,
                "data_phase": self.bits_data,
            },
            "mean_load_ratio": self.mean_load_ratio(),
            "error_frames": self.errors.to_json(),
            "bus_state": self.state.to_json(),
            "windows": self.windows.to_json(),
            "frames_dropped": {
                "socket": {"source": "socket", "frames": self.dropped["socket"]},
                "interface": {"source": "netlink", "frames": self.dropped["interface"]},
            },
            "ids": self.ids.to_json(),
        }
        if self.link is not None:
            out["link"] = self.link.to_json()
        return out


def _duration(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.1f} s"
