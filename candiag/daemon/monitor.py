"""Per-bus live analysis: frame batches in, metrics snapshot and health report out.

A :class:`BusMonitor` feeds one bus's batches through the same
:class:`~candiag.health.pipeline.BusPipeline` ``candiag analyze`` uses on a capture
(decoder, error frames, bus state, exact load, windows, ids, nodes, signals).
What only a live daemon needs is owned here:

* live time: with a :class:`~candiag.daemon.clock.LiveClock`, frame timestamps are mapped
  onto that monotonic clock (:class:`~candiag.daemon.clock.FrameTimes`) so a step of the
  wall clock or of the adapter's clock moves no window; exported times are wall-clock;
* moving the sliding windows (:class:`~candiag.health.windows.BusWindows`) and the
  bus-state clock to the live time when nothing arrives;
* freshness: only signals younger than 3 cycle times are exported;
* the bus ``down`` state while its interface is missing;
* per-id frame counters capped at 256 ids per bus for the metrics;
* frames dropped before processing, as totals and over the last minute.

Everything here runs in the daemon's one processing thread; :meth:`BusMonitor.snapshot`
and :meth:`BusMonitor.report` are called under the daemon's state lock.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable
from typing import Any

import numpy as np

from candiag.config.model import BusConfig
from candiag.daemon.clock import FrameTimes, LiveClock
from candiag.decode.dbc import ChargerDatabase
from candiag.health.ids import CappedIdCounter
from candiag.health.linkstats import LinkStats
from candiag.health.nodes import FamilyPolicy
from candiag.health.pipeline import BusPipeline
from candiag.health.report import BusReport, WindowReport
from candiag.health.windows import WINDOWS
from candiag.ingest.frames import FrameBatch
from candiag.metrics.snapshot import (
    MAX_IDS_PER_BUS,
    OVERFLOW_ID,
    BusSnapshot,
    NodeSnapshot,
    SignalValue,
)

# Frames dropped within this many seconds count as "recent" for the diagnosis.
RECENT_DROPS_S = 60.0
# Longest time liveness is judged against the bus's newest frame instead of wall time.
MAX_LAG_S = 2.0


def policies_for(bus: BusConfig) -> list[FamilyPolicy]:
    return [
        FamilyPolicy(
            name=f.name,
            expected=frozenset(f.expected),
            timeout_s=f.timeout_s,
            allowed_firmware=frozenset(f.allowed_firmware),
        )
        for f in bus.families
    ]


class BusMonitor:
    """Live analysis of one CAN bus."""

    def __init__(
        self, config: BusConfig, db: ChargerDatabase, *, clock: LiveClock | None = None
    ) -> None:
        """``clock``: map frame timestamps onto it (the daemon); ``None``: use them as given."""
        self.config = config
        self.db = db
        self.clock = clock
        self.frame_times = FrameTimes()
        self.pipeline = BusPipeline(
            config.name,
            db,
            bitrate=config.bitrate,
            data_bitrate=config.data_bitrate,
            policies=policies_for(config),
        )
        self.ids = CappedIdCounter(cap=MAX_IDS_PER_BUS)  # label values per bus, for ever
        self.complete_until: float | None = None
        self.up = False
        self.down_since: float | None = None
        self.dropped: dict[str, int] = {"socket": 0, "interface": 0}
        self._drop_history: deque[tuple[float, int]] = deque()
        self.link: LinkStats | None = None
        self._link_update = 0

    # The pipeline's trackers, by the names the daemon and the monitor view use.
    @property
    def nodes(self) -> Any:
        return self.pipeline.nodes

    @property
    def signals(self) -> Any:
        return self.pipeline.signals

    @property
    def state(self) -> Any:
        return self.pipeline.state

    @property
    def frames(self) -> dict[str, int]:
        """Frames by kind (data, remote, error) since start."""
        f = self.pipeline.frames
        return {"data": f["data"], "remote": f["remote"], "error": f["error"]}

    # -- ingest ----------------------------------------------------------------------
    def process(self, batch: FrameBatch, now: float | None = None) -> None:
        """Fold one batch of this bus's frames into every tracker (numpy, no frame loop).

        ``now``: the live time the batch was drained at; with a clock, the frames' times
        are mapped onto it (see :class:`~candiag.daemon.clock.FrameTimes`).
        """
        if self.clock is not None:
            drained = self.clock.now() if now is None else now
            live = self.frame_times.to_live(batch.timestamp, drained, self.clock.wall_offset())
            if len(batch):
                batch = dataclasses.replace(batch, timestamp=live)
        if len(batch) == 0:
            return
        not_error = ~batch.is_error
        self.ids.add(batch.can_id[not_error], batch.is_extended[not_error])
        self.pipeline.process(batch)

    def advance(self, now: float, complete_until: float | None = None) -> None:
        """Move windows and state clock to ``now`` (seconds without frames expire).

        ``now``: live time with a clock (:meth:`LiveClock.now`), else frame time.

        ``complete_until``: every frame received before this instant has been
        processed (the reader hands batches over with some delay).  Liveness and
        freshness are judged at that instant, so reader latency never makes a
        healthy node look silent.
        """
        self.pipeline.health.windows.advance(now)
        self.pipeline.protocol.advance_to(int(np.floor(now)))
        if self.up:
            self.pipeline.state.advance(now)
        self.complete_until = now if complete_until is None else min(now, complete_until)
        self._note_drops(now)

    def _note_drops(self, now: float) -> None:
        total = sum(self.dropped.values())
        history = self._drop_history
        if not history or history[-1][1] != total:
            history.append((now, total))
        while len(history) > 1 and history[1][0] <= now - RECENT_DROPS_S:
            history.popleft()

    def dropped_recent(self) -> int:
        """Frames dropped during about the last minute."""
        if not self._drop_history:
            return 0
        return sum(self.dropped.values()) - self._drop_history[0][1]

    def observe_link(self, update: tuple[int, LinkStats] | None, now: float) -> None:
        """The kernel's own view of the link (netlink), when a new snapshot arrived.

        Its controller state counts as evidence beside the error frames (drivers report
        state changes only on transitions, and some send no bus-error frames at all).
        """
        if update is None or update[0] == self._link_update:
            return
        self._link_update, stats = update
        self.link = stats
        if self.up and stats.state in ("error_active", "error_warning", "error_passive", "bus_off"):
            if stats.state != self.pipeline.state.state_name:
                self.pipeline.state.observe(stats.state, now, source="netlink")

    def counters(self) -> tuple[int | None, int | None, str]:
        """TEC/REC and where they came from: error frames, else the kernel's berr-counter."""
        state = self.pipeline.state
        if state.tec is not None:
            return state.tec, state.rec, "error_frames"
        if self.link is not None and self.link.tec is not None:
            return self.link.tec, self.link.rec, "netlink"
        return None, None, "none"

    def set_link(self, up: bool, now: float, reason: str | None = None) -> None:
        """The reader's view of the interface: ``down`` while it is missing or lost.

        A PCAN adapter reports bus-off by raising from ``recv``; ``reason`` (the reader's
        last error) is mapped by :func:`candiag.health.pcan.map_pcan_exception` so such a
        loss counts as a bus-off event, not only as a lost link.
        """
        if up == self.up:
            return
        self.up = up
        if up:
            self.down_since = None
            self.pipeline.state.observe("error_active", now, source="daemon")
            return
        self.down_since = now
        if self.config.interface == "pcan" and reason:
            from candiag.health.pcan import map_pcan_exception

            status = map_pcan_exception(reason)
            if status.state == "bus_off":
                self.pipeline.state.observe("bus_off", now, source="pcan")
        self.pipeline.state.observe("down", now, source="daemon")

    # -- views -------------------------------------------------------------------------
    def warmup_s(self) -> float:
        """Time after start before "never seen" can be judged: the longest family timeout."""
        families = {f.name for f in self.config.families} | set(self.db.families)
        return max((self.nodes.timeout_for(f) for f in families), default=0.0)

    def as_of(self, now: float) -> float:
        """The instant liveness and freshness are judged at.

        Not past the processed data (``complete_until``), and not more than
        ``MAX_LAG_S`` past the newest frame of the bus: while other nodes' frames
        keep arriving, a node is silent only relative to them, so a reader or
        sender delayed by a loaded CPU does not make every node look offline.
        When the whole bus falls silent, wall time takes over after ``MAX_LAG_S``.
        """
        t = now if self.complete_until is None else min(now, self.complete_until)
        newest = self.pipeline.last_ts
        if newest is not None and self.up:
            t = min(t, max(newest, t - MAX_LAG_S))
        return t

    def windows(self) -> dict[str, WindowReport]:
        """The 10/60/300/3600 s windows, up to the last :meth:`advance` or frame."""
        win = self.pipeline.windows
        out = self.pipeline.window_report()
        for label, seconds in WINDOWS.items():
            # Rates over the seconds actually covered, so a young bus is not under-reported.
            covered = max(1, win.ring.covered_seconds(seconds))
            out[label] = dataclasses.replace(
                out[label], frames_per_second=out[label].frames / covered
            )
        return out

    def state_name(self) -> str:
        return str(self.state.state_name) if self.up else "down"

    def to_wall(self, t: float | None) -> float | None:
        """A time of this monitor as a wall-clock time (what users and exports see)."""
        if t is None or self.clock is None:
            return t
        return self.clock.to_wall(t)

    def snapshot(self, now: float) -> BusSnapshot:
        now = self.as_of(now)
        windows = self.windows()
        views = self.nodes.view(now)
        mismatches = {m.family for m in self.nodes.firmware_mismatches()}
        families = sorted({v.family for v in views} | mismatches)
        return BusSnapshot(
            name=self.config.name,
            up=self.up,
            state=self.state_name(),
            frames=self.frames,
            id_frames=self.ids.labelled(OVERFLOW_ID),
            error_frames=dict(self.pipeline.errors.by_class),
            bus_off_total=self.state.bus_off_events,
            restarts_total=self.state.restarts,
            load_ratio={w: v.load_ratio for w, v in windows.items()},
            error_window={w: dict(v.error_frames) for w, v in windows.items()},
            tx_errors=self.counters()[0],
            rx_errors=self.counters()[1],
            dropped=dict(self.dropped),
            nodes=tuple(
                NodeSnapshot(
                    v.family, str(v.address), v.online, self.to_wall(v.last_seen), v.firmware
                )
                for v in views
            ),
            firmware_mismatch={f: f in mismatches for f in families},
            signals=tuple(self.fresh_signals(now)) if self.up else (),
            frames_per_second=windows["10s"].frames_per_second,
        )

    def fresh_signals(self, now: float) -> Iterable[SignalValue]:
        for s in self.signals.fresh(now):
            if np.isfinite(s.last):
                node = "" if s.node < 0 else str(s.node)
                yield SignalValue(s.message, s.signal, node, s.unit, s.last)

    def report(self, now: float) -> BusReport:
        """The bus report of ``candiag analyze`` plus the live link state (diagnosis input)."""
        now = self.as_of(now)
        report = self.pipeline.report(now)
        tec, rec, source = self.counters()
        errors = dataclasses.replace(
            report.error_frames, tec_last=tec or 0, rec_last=rec or 0, counters_source=source
        )
        return dataclasses.replace(
            report,
            up=self.up,
            down_since=self.down_since,
            state=self.state_name(),
            windows=self.windows(),
            dropped=dict(self.dropped),
            dropped_recent=self.dropped_recent(),
            error_frames=errors,
            link=self.link if self.link is not None else report.link,
        )
