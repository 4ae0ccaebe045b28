"""One live CAN bus: its reader, its analysis, its link state, its one report.

A :class:`LiveBus` is the live engine's one object per bus (:mod:`candiag.live.engine`).
It drains its frame source (:meth:`LiveBus.poll`), tells itself what the source says of
the link (up or down with the reason, the kernel's netlink view) and feeds the frames
through the same :class:`~candiag.health.pipeline.BusPipeline` ``candiag analyze`` uses on
a capture (decoder, error frames, bus state, exact load, windows, ids, nodes, signals).
What only a live bus needs is owned here:

* live time: with a :class:`~candiag.live.clock.LiveClock`, frame timestamps are mapped
  onto that monotonic clock (:class:`~candiag.live.clock.FrameTimes`) so a step of the
  wall clock or of the adapter's clock moves no window; exported times are wall-clock;
* moving the sliding windows and the bus-state clock to the live time when nothing arrives;
* rates over the time really covered: a window younger than its length (start, reset) is
  divided by the seconds since counting began, never by whole seconds it did not see;
* TEC/REC from the newest evidence: error-frame counters, the kernel's berr-counter, or 0
  after a controller restart (the restart resets them without a new counter frame);
* freshness: only signals younger than 3 cycle times are exported;
* the bus ``down`` state while its interface is missing, a PCAN bus-off signalled by an
  exception counted as a bus-off;
* per-id frame counters capped at 256 ids per bus for the metrics;
* frames dropped before processing, as totals and over the last minute;
* :meth:`LiveBus.reset`: counting afresh with the source kept open.

Everything here runs in the engine's one processing thread; :meth:`LiveBus.snapshot`
and :meth:`LiveBus.report` are called under the engine's state lock.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable, Iterator, Mapping

import numpy as np

from candiag.config.model import BusConfig
from candiag.decode.dbc import ChargerDatabase
from candiag.health.ids import CappedIdCounter
from candiag.health.linkstats import LinkStats
from candiag.health.nodes import FamilyPolicy
from candiag.health.pipeline import BusPipeline
from candiag.health.report import BusReport, WindowReport
from candiag.health.signals import SignalStat
from candiag.health.windows import WINDOWS
from candiag.ingest.frames import FrameBatch
from candiag.live.clock import FrameTimes, LiveClock
from candiag.live.readers import FrameSource
from candiag.metrics.snapshot import (
    MAX_IDS_PER_BUS,
    OVERFLOW_ID,
    BusSnapshot,
    NodeSnapshot,
    SignalValue,
)
from candiag.socketcan_errors import CAN_ERR_CNT, CAN_ERR_RESTARTED

# Frames dropped within this many seconds count as "recent" for the diagnosis.
RECENT_DROPS_S = 60.0
# Longest time liveness is judged against the bus's newest frame instead of wall time.
MAX_LAG_S = 2.0
# Shortest time a young window's rates are divided by (a reader hands frames over every 0.1 s).
MIN_RATE_SPAN_S = 0.1
CONTROLLER_STATES = ("error_active", "error_warning", "error_passive", "bus_off")


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


class LiveBus:
    """One live CAN bus: source, analysis, link state; one report, one snapshot."""

    def __init__(
        self,
        config: BusConfig,
        db: ChargerDatabase,
        *,
        source: FrameSource | None = None,
        clock: LiveClock | None = None,
    ) -> None:
        """``source``: what :meth:`poll` drains (``None``: fed with :meth:`process`).

        ``clock``: map frame timestamps onto it (the engine); ``None``: use them as given.
        """
        self.config = config
        self.db = db
        self.source = source
        self.clock = clock
        self.frame_times = FrameTimes()
        self.up = False
        self.down_since: float | None = None
        self.link: LinkStats | None = None
        self._link_update = 0
        self._dropped_base: dict[str, int] = {}
        self._start_counting(None)

    def _start_counting(self, now: float | None) -> None:
        """Fresh analysis (start, :meth:`reset`); source, link and clock mapping are kept."""
        self.pipeline = BusPipeline(
            self.config.name,
            self.db,
            bitrate=self.config.bitrate,
            data_bitrate=self.config.data_bitrate,
            policies=policies_for(self.config),
        )
        self.ids = CappedIdCounter(cap=MAX_IDS_PER_BUS)  # label values per bus, for ever
        self.complete_until: float | None = None
        # Frames came with the last poll: the reader is delivering (maybe behind wall time).
        self._frames_polled = False
        self.dropped: dict[str, int] = {"socket": 0, "interface": 0}
        self._drop_history: deque[tuple[float, int]] = deque()
        self.counting_since = now  # None until the link is first up
        self._advanced_to: float | None = None
        self._counters_at: float | None = None  # newest error-frame TEC/REC (live time)
        self._restarted_at: float | None = None  # newest controller restart
        self._link_at: float | None = None  # newest netlink snapshot applied
        # TEC/REC known at a reset: (when, tec, rec, source), until newer evidence.
        self._carried: tuple[float, int | None, int | None, str] | None = None

    # -- the engine's work ----------------------------------------------------------------
    def poll(self, now: float, complete_until: float | None = None) -> FrameBatch:
        """Drain the source into the analysis; returns the batch as drained (for recordings).

        The link first (up or down with the source's last error, the kernel's view), then
        the frames, then time moves to ``now``: the same order for every front-end.
        """
        if self.source is None:
            raise RuntimeError(f"bus {self.config.name!r} has no frame source to poll")
        source = self.source
        batch = source.drain()
        self.set_link(source.up, now, source.last_error)
        self.observe_link(source.link_stats, now)
        before = sum(self.dropped.values())
        self.dropped = {k: v - self._dropped_base.get(k, 0) for k, v in source.dropped.items()}
        # Per second in the windows, where the CAN_FRAMES_DROPPED window rule reads them.
        self.pipeline.windows.add_dropped(now, sum(self.dropped.values()) - before)
        self.process(batch, now)
        self._frames_polled = len(batch) > 0
        self.advance(now, complete_until)
        return batch

    def reset(self, now: float) -> None:
        """Count afresh from ``now``: the source stays open, what is known *now* is kept.

        Drivers report the controller state only on transitions, so the new count starts in
        the state the bus is in (not error-active by default) with the TEC/REC last known,
        until newer evidence arrives.
        """
        if self.source is not None:
            self._dropped_base = dict(self.source.dropped)
        state = self.pipeline.state.state_name
        tec, rec, source = self.counters()
        self._start_counting(now)
        self.pipeline.state.observe(state if self.up else "down", now, source="daemon")
        if source != "none":
            self._carried = (now, tec, rec, source)
        self._link_update = 0  # the kernel's current view applies to the new count at once

    def process(self, batch: FrameBatch, now: float | None = None) -> None:
        """Fold one batch of this bus's frames into every tracker (numpy, no frame loop).

        ``now``: the live time the batch was drained at; with a clock, the frames' times
        are mapped onto it (see :class:`~candiag.live.clock.FrameTimes`).
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
        self._note_counter_evidence(batch)
        self.pipeline.process(batch)

    def _note_counter_evidence(self, batch: FrameBatch) -> None:
        """When the batch's newest TEC/REC and controller restart happened (live time)."""
        rows = np.flatnonzero(batch.is_error)
        if rows.size == 0:
            return
        ids, ts = batch.can_id[rows], batch.timestamp[rows]
        for mask, attr in ((CAN_ERR_CNT, "_counters_at"), (CAN_ERR_RESTARTED, "_restarted_at")):
            hit = (ids & mask) != 0
            if hit.any():
                t = float(ts[hit].max())
                previous = getattr(self, attr)
                setattr(self, attr, t if previous is None else max(previous, t))

    def advance(self, now: float, complete_until: float | None = None) -> None:
        """Move windows and state clock to ``now`` (seconds without frames expire).

        ``now``: live time with a clock (:meth:`LiveClock.now`), else frame time.

        ``complete_until``: every frame received before this instant has been
        processed (the reader hands batches over with some delay).  Liveness and
        freshness are judged at that instant, so reader latency never makes a
        healthy node look silent.
        """
        # Nothing to move before the link was first up (or a frame came): the time before
        # it is in no controller state.  Afterwards a "down" bus accrues time down.
        self.complete_until = now if complete_until is None else min(now, complete_until)
        if self.up or self.down_since is not None or self.pipeline.last_ts is not None:
            self.pipeline.advance(now, judged_at=self._judged_at(now))
        self._advanced_to = now if self._advanced_to is None else max(self._advanced_to, now)
        self._note_drops(now)

    def _judged_at(self, now: float) -> float:
        """When waiting requests are judged (answered or not): while the reader delivers
        frames, not past the newest one (a reader behind wall time, e.g. a pipe read late
        at start, must not turn a reply still queued into an unanswered request); when the
        bus is quiet, as liveness is judged (:meth:`as_of`)."""
        t = self.as_of(now)
        newest = self.pipeline.last_ts
        if self._frames_polled and newest is not None:
            t = min(t, newest)
        return t

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
        if stats.tec is not None:
            self._link_at = now
        if self.up and stats.state in CONTROLLER_STATES:
            if stats.state != self.pipeline.state.state_name:
                self.pipeline.state.observe(stats.state, now, source="netlink")

    def counters(self) -> tuple[int | None, int | None, str]:
        """TEC/REC and where they came from, the newest evidence first.

        Error frames carrying counters, the kernel's berr-counter (netlink), or 0 after a
        controller restart newer than both (a restart resets the counters and says so in
        an error frame of its own, without counters).
        """
        state = self.pipeline.state
        candidates: list[tuple[float, int, int | None, int | None, str]] = []
        if state.tec is not None:
            candidates.append(
                (self._counters_at or -np.inf, 2, state.tec, state.rec, "error_frames")
            )
        if self.link is not None and self.link.tec is not None:
            candidates.append(
                (self._link_at or -np.inf, 1, self.link.tec, self.link.rec, "netlink")
            )
        if self._carried is not None:
            at, tec, rec, source = self._carried
            candidates.append((at, -1, tec, rec, source))
        if self._restarted_at is not None and candidates:
            candidates.append((self._restarted_at, 0, 0, 0, "error_frames"))
        if not candidates:
            return None, None, "none"
        _, _, tec, rec, source = max(candidates, key=lambda c: (c[0], c[1]))
        return tec, rec, source

    def set_link(self, up: bool, now: float, reason: str | None = None) -> None:
        """The source's view of the interface: ``down`` while it is missing or lost.

        A PCAN adapter reports bus-off by raising from ``recv``; ``reason`` (the reader's
        last error) is mapped by :func:`candiag.health.pcan.map_pcan_exception` so such a
        loss counts as a bus-off event, not only as a lost link.
        """
        if up == self.up:
            return
        self.up = up
        if up:
            self.down_since = None
            if self.counting_since is None:
                self.counting_since = now
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
    @property
    def name(self) -> str:
        return self.config.name

    @property
    def last_error(self) -> str | None:
        """Why the source is down, while it is (``None`` when up or still opening)."""
        if self.source is None or self.source.up:
            return None
        return self.source.last_error

    @property
    def frames(self) -> dict[str, int]:
        """Frames by kind (data, remote, error) since start or reset."""
        f = self.pipeline.frames
        return {"data": f["data"], "remote": f["remote"], "error": f["error"]}

    @property
    def bus_off_events(self) -> int:
        return self.pipeline.state.bus_off_events

    @property
    def restarts(self) -> int:
        return self.pipeline.state.restarts

    def warmup_s(self) -> float:
        """Time after start before "never seen" can be judged: the longest family timeout."""
        families = {f.name for f in self.config.families} | set(self.db.families)
        return max((self.pipeline.nodes.timeout_for(f) for f in families), default=0.0)

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
        """The 10/60/300/3600 s windows, up to the last :meth:`advance` or frame.

        Frame rates over the time the window really covers: from its first second, or
        from when counting began (start, reset) if that is later, to the newest frame
        handed over; so a young bus or one just reset is neither under- nor over-reported.
        The load of a window that began with this count is measured the same way (older
        windows: over their complete seconds, as ``analyze`` does).
        """
        out = self.pipeline.window_report()
        win = self.pipeline.windows
        end = self._rate_end()
        bitrate = self.config.bitrate
        data_bitrate = self.config.data_bitrate or bitrate
        for label, seconds in WINDOWS.items():
            covered = win.ring.covered_seconds(seconds)
            if end is None or covered == 0:
                out[label] = dataclasses.replace(
                    out[label], frames_per_second=out[label].frames / max(1, covered)
                )
                continue
            first_second = float(np.floor(end)) - covered + 1
            since = self.counting_since
            young = since is not None and since > first_second
            start = since if young and since is not None else first_second
            span = max(end - start, MIN_RATE_SPAN_S)
            out[label] = dataclasses.replace(out[label], frames_per_second=out[label].frames / span)
            if young and bitrate:
                counts = win.counts(seconds)
                busy = counts["bits_nominal"] / bitrate + counts["bits_data"] / data_bitrate
                out[label] = dataclasses.replace(
                    out[label], load_ratio=round(min(busy / span, 1.0), 6)
                )
        return out

    def _rate_end(self) -> float | None:
        """Up to when the frames handed over are complete: the newest frame, at least the
        instant before which all have surely arrived (``None``: never advanced)."""
        if self._advanced_to is None:
            return None
        end = self._advanced_to if self.complete_until is None else self.complete_until
        newest = self.pipeline.last_ts
        if newest is not None:
            end = max(end, min(newest, self._advanced_to))
        return end

    def state_name(self) -> str:
        return str(self.pipeline.state.state_name) if self.up else "down"

    def to_wall(self, t: float | None) -> float | None:
        """A time of this bus as a wall-clock time (what users and exports see)."""
        if t is None or self.clock is None:
            return t
        return self.clock.to_wall(t)

    def snapshot(self, now: float) -> BusSnapshot:
        """The exported picture of this bus (metrics), from the same figures as :meth:`report`."""
        now = self.as_of(now)
        windows = self.windows()
        nodes = self.pipeline.nodes
        views = nodes.view(now)
        mismatches = {m.family for m in nodes.firmware_mismatches()}
        families = sorted({v.family for v in views} | mismatches)
        tec, rec, _ = self.counters()
        return BusSnapshot(
            name=self.config.name,
            up=self.up,
            state=self.state_name(),
            frames=self.frames,
            id_frames=self.ids.labelled(OVERFLOW_ID),
            error_frames=dict(self.pipeline.errors.by_class),
            bus_off_total=self.bus_off_events,
            restarts_total=self.restarts,
            load_ratio={w: v.load_ratio for w, v in windows.items()},
            error_window={w: dict(v.error_frames) for w, v in windows.items()},
            tx_errors=tec,
            rx_errors=rec,
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

    def fresh_signal_stats(self, now: float) -> Iterator[SignalStat]:
        """Signals younger than 3 cycle times, judged at :meth:`as_of` ``now``."""
        return self.pipeline.signals.fresh(self.as_of(now))

    def fresh_signals(self, now: float) -> Iterable[SignalValue]:
        for s in self.pipeline.signals.fresh(now):
            if np.isfinite(s.last):
                node = "" if s.node < 0 else str(s.node)
                yield SignalValue(s.message, s.signal, node, s.unit, s.last, s.role or "")

    def families_by_message(self) -> Mapping[str, str | None]:
        return {m.name: m.family for m in self.db.messages}

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
