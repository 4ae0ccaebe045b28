"""Per-bus live analysis: frame batches in, metrics snapshot and health report out.

A :class:`BusMonitor` chains, for one bus, the same pieces ``candiag analyze``
uses on a capture: the vectorized decoder, error-frame summary, bus-state
tracker, exact bus load (``frame_bits``), node tracking and signal statistics.
What only a live daemon needs is owned here:

* moving the sliding windows (:class:`~candiag.health.windows.BusWindows`) and the
  bus-state clock to wall time when nothing arrives;
* freshness: only signals younger than 3 cycle times are exported;
* the bus ``down`` state while its interface is missing.

Everything here runs in the daemon's one processing thread; :meth:`BusMonitor.snapshot`
and :meth:`BusMonitor.report` are called under the daemon's state lock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import numpy as np

from candiag.daemon.config import BusConfig, FamilyConfig
from candiag.decode.dbc import ChargerDatabase, MessageDef
from candiag.decode.decoder import BatchDecoder
from candiag.health.busload import frame_bits
from candiag.health.busstate import BusStateTracker
from candiag.health.errorframes import ErrorFrameSummary
from candiag.health.ids import IdStats
from candiag.health.nodes import FamilyPolicy, NodeTracker
from candiag.health.signals import SignalStats
from candiag.health.windows import WINDOWS, BusWindows
from candiag.ingest.frames import FrameBatch
from candiag.metrics.snapshot import (
    BusSnapshot,
    CappedIdCounts,
    NodeSnapshot,
    SignalValue,
)


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


def apply_mask_overrides(db: ChargerDatabase, families: Iterable[FamilyConfig]) -> ChargerDatabase:
    """The database with the config's ``mask`` overrides applied to each family's messages."""
    masks = {f.name: f.mask for f in families if f.mask is not None}
    if not masks:
        return db
    messages: list[MessageDef] = []
    for m in db.messages:
        mask = masks.get(m.family or "")
        if mask is None:
            messages.append(m)
        else:
            messages.append(dataclasses.replace(m, node_mask=mask, frame_id=m.frame_id & ~mask))
    return ChargerDatabase(messages, sources=getattr(db, "sources", ()))


class BusMonitor:
    """Live analysis of one CAN bus."""

    def __init__(self, config: BusConfig, db: ChargerDatabase) -> None:
        self.config = config
        self.db = db
        self.decoder = BatchDecoder(db)
        self.errors = ErrorFrameSummary()
        self.state = BusStateTracker()
        self.nodes = NodeTracker(db, policies_for(config))
        self.signals = SignalStats(db)
        self.ids = CappedIdCounts()
        self.id_stats = IdStats()
        self._id_lookup: dict[tuple[int, bool], tuple[MessageDef | None, int]] = {}
        self.windows_ = BusWindows(config.bitrate, config.data_bitrate)
        self.frames = dict.fromkeys(("data", "remote", "error"), 0)
        self.unknown_frames = 0
        self.complete_until: float | None = None
        self.short_frames = 0
        self.up = False
        self.down_since: float | None = None
        self.dropped: dict[str, int] = {"socket": 0, "interface": 0}

    # -- ingest ----------------------------------------------------------------------
    def process(self, batch: FrameBatch) -> None:
        """Fold one batch of this bus's frames into every tracker (numpy, no frame loop)."""
        if len(batch) == 0:
            return
        is_error, is_remote = batch.is_error, batch.is_remote
        n_err, n_rem = int(is_error.sum()), int(is_remote.sum())
        self.frames["error"] += n_err
        self.frames["remote"] += n_rem
        self.frames["data"] += len(batch) - n_err - n_rem
        not_error = ~is_error
        self.ids.add(batch.can_id[not_error], batch.is_extended[not_error])
        self.id_stats.update(batch)
        self.errors.update(batch)
        bus_off_times = self.state.update(batch)
        self.windows_.update(batch, frame_bits(batch), bus_off_times)
        result = self.decoder.decode(batch)
        self.unknown_frames += sum(result.unknown_ids.values())
        self.short_frames += sum(result.short_frames.values())
        self.nodes.update(result)
        self.signals.update(result)

    def advance(self, now: float, complete_until: float | None = None) -> None:
        """Move windows and state clock to wall time (seconds without frames expire).

        ``complete_until``: every frame received before this instant has been
        processed (the reader hands batches over with some delay).  Liveness and
        freshness are judged at that instant, so reader latency never makes a
        healthy node look silent.
        """
        self.windows_.advance(now)
        if self.up:
            self.state.advance(now)
        self.complete_until = now if complete_until is None else min(now, complete_until)

    def warmup_s(self) -> float:
        """Time after start before "never seen" can be judged: the longest family timeout."""
        families = {f.name for f in self.config.families} | set(self.db.families)
        return max((self.nodes.timeout_for(f) for f in families), default=0.0)

    def as_of(self, now: float) -> float:
        """The instant views are judged at: ``now``, but not past the processed data."""
        return now if self.complete_until is None else min(now, self.complete_until)

    def set_link(self, up: bool, now: float) -> None:
        """The reader's view of the interface: ``down`` while it is missing or lost."""
        if up == self.up:
            return
        self.up = up
        if up:
            self.down_since = None
            self.state.observe("error_active", now, source="daemon")
        else:
            self.down_since = now
            self.state.observe("down", now, source="daemon")

    # -- views -------------------------------------------------------------------------
    def windows(self) -> dict[str, dict[str, Any]]:
        """The 10/60/300/3600 s windows, up to the last :meth:`advance` or frame."""
        win = self.windows_
        out: dict[str, dict[str, Any]] = {}
        for label, seconds in WINDOWS.items():
            counts = win.counts(seconds)
            frames = counts["frames_data"] + counts["frames_remote"]
            covered = max(1, win.ring.covered_seconds(seconds))
            by_class = win.error_counts(seconds)
            out[label] = {
                "load_ratio": win.load_ratio(seconds),
                "max_ratio_1s": win.max_ratio_1s(seconds),
                "frames": frames,
                "frames_per_second": frames / covered,
                "error_frames": by_class,
                "error_frames_total": counts["frames_error"],
                "bus_off": counts["bus_off_events"],
            }
        return out

    def state_name(self) -> str:
        return self.state.state_name if self.up else "down"

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
            frames=dict(self.frames),
            id_frames=self.ids.labelled(),
            error_frames=dict(self.errors.by_class),
            bus_off_total=self.state.bus_off_events,
            restarts_total=self.state.restarts,
            load_ratio={w: v["load_ratio"] for w, v in windows.items()},
            error_window={w: v["error_frames"] for w, v in windows.items()},
            tx_errors=self.state.tec,
            rx_errors=self.state.rec,
            dropped=dict(self.dropped),
            nodes=tuple(
                NodeSnapshot(v.family, str(v.address), v.online, v.last_seen, v.firmware)
                for v in views
            ),
            firmware_mismatch={f: f in mismatches for f in families},
            signals=tuple(self.fresh_signals(now)) if self.up else (),
            frames_per_second=windows["10s"]["frames_per_second"],
        )

    def fresh_signals(self, now: float) -> Iterable[SignalValue]:
        for s in self.signals.fresh(now):
            if np.isfinite(s.last):
                yield SignalValue(
                    s.message, s.signal, "" if s.node < 0 else str(s.node), s.unit, s.last
                )

    def _message_of(self, can_id: int, extended: bool) -> tuple[MessageDef | None, int]:
        key = (can_id, extended)
        found = self._id_lookup.get(key)
        if found is None:
            index, node = self.db.match(np.array([can_id], np.uint32), np.array([extended]))
            i = int(index[0])
            found = (self.db.messages[i] if i >= 0 else None, int(node[0]))
            self._id_lookup[key] = found
        return found

    def _cycle_ms(self, can_id: int, extended: bool) -> float | None:
        message = self._message_of(can_id, extended)[0]
        return (
            None if message is None or not message.cycle_time_ms else float(message.cycle_time_ms)
        )

    def id_report(self) -> dict[str, dict[str, Any]]:
        """Per-id cycle keeping, keyed by id text, for the cycle-time rule."""
        out: dict[str, dict[str, Any]] = {}
        for check in self.id_stats.check_cycles(self._cycle_ms):
            row = check.row
            message, node = self._message_of(row.can_id, row.extended)
            out[row.id_text] = {
                "name": message.name if message else None,
                "family": message.family if message else None,
                "node": (node if node >= 0 else 0) if message and message.family else None,
                "cycle_ok": check.keeps_cycle,
                "cycle_ms": check.declared_s * 1000.0,
                "mean_period_s": row.period_mean,
                "jitter_s": row.period_std,
                "count": row.count,
                "last_seen": row.last_seen,
                "reason": check.reason,
            }
        return out

    def report(self, now: float) -> dict[str, Any]:
        """The JSON-shaped bus report the diagnosis rules read (see candiag.diagnosis.rules)."""
        now = self.as_of(now)
        errors = self.errors.to_json()
        errors.update({"tec_last": self.state.tec, "rec_last": self.state.rec})
        report: dict[str, Any] = {
            "name": self.config.name,
            "bitrate": self.config.bitrate,
            "up": self.up,
            "down_since": self.down_since,
            "state": self.state_name(),
            "bus_state": self.state.to_json(),
            "error_frames": errors,
            "windows": self.windows(),
            "nodes": [v.to_json() for v in self.nodes.view(now)],
            "firmware_mismatches": [m.to_json() for m in self.nodes.firmware_mismatches()],
            "ids": self.id_report(),
            "unknown_frames": self.unknown_frames,
            "short_frames": self.short_frames,
            "dropped_recent": sum(self.dropped.values()),
        }
        report.update(self.signals.facts(now))
        return report
