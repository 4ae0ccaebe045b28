"""The per-bus analysis pipeline shared by ``candiag analyze``, the daemon and the monitor.

:class:`BusPipeline` chains, for one bus, everything candiag measures from frames:
the vectorized decoder, error-frame classes and sub-fields, the bus state,
exact bus load, the sliding windows, per-id statistics and cycle checks, node
presence and firmware, and signal statistics.  One batch in, every tracker
updated with array operations; :meth:`BusPipeline.report` gives the typed bus report
(:mod:`candiag.health.report`) that ``analyze`` prints and the diagnosis rules, the live
view and the HTML report read: one builder, whole or (``detail=False``) just what the
rules read.

Time is frame time: a capture supplies its own timestamps, a live bus advances
the windows to wall time with :meth:`BusPipeline.advance`.  With
``keep_history=True`` (offline reports) it also keeps per-second series for
plots (:class:`Timeline`).

Why one file of ~700 lines: it is the one place the trackers are chained and the one
report builder; splitting the builder from the chain would give two places to keep in step.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from candiag.decode.dbc import ChargerDatabase, MessageDef
from candiag.decode.decoder import BatchDecoder, DecodedMessage, DecodeResult
from candiag.health.arrays import run_bounds
from candiag.health.bitrate import DEFAULT_BITRATE
from candiag.health.bus import BusHealth
from candiag.health.busstate import BUS_STATES, BusStateTracker
from candiag.health.cycles import (
    CYCLE_STEP_S,
    MAX_CYCLE_BREAKS,
    CycleBreak,
    CycleHistory,
    step_of,
)
from candiag.health.errorframes import ERROR_CLASSES, ErrorFrameSummary
from candiag.health.ids import (
    DEFAULT_MAX_IDS,
    CappedIdCounter,
    CycleCheck,
    IdStats,
    Periods,
    id_key_text,
)
from candiag.health.nodes import FamilyPolicy, NodeTracker
from candiag.health.report import (
    BusReport,
    BusStateReport,
    ContactorReport,
    CoolingReport,
    CurrentsReport,
    DecodeReport,
    ErrorBursts,
    ErrorCounters,
    ErrorFramesReport,
    FrameCounts,
    IdEntry,
    LoadReport,
    SignalReport,
    TimelineReport,
    WindowReport,
)
from candiag.health.signalevidence import SERIES_HISTORY_S
from candiag.health.signals import SignalStats
from candiag.health.thresholds import HealthThresholds, load_thresholds
from candiag.health.windows import WINDOWS, BusWindows
from candiag.ingest.frames import FrameBatch, format_can_id
from candiag.liveness import LivenessTracker
from candiag.socketcan_errors import PROTOCOL_TYPE_FLAGS

# Columns of the protocol-error ring: all protocol frames, then one per violation type.
# Signal roles plotted per node in the offline report.
TIMELINE_ROLES = {
    "output_voltage": "Output voltage",
    "output_current": "Output current",
    "temperature": "Temperature",
    "meter:current": "DC meter current",
    "cooling:coolant_temperature": "Coolant temperature",
}
TOP_UNKNOWN_IDS = 10
# The windows the diagnosis rules read (the others are for reports and metrics).
DIAGNOSIS_WINDOWS = ("10s", "60s")
# Cycle-time verdicts need many periods; re-judging them more often than this is wasted work.
IDS_JUDGE_INTERVAL_S = 5.0
# Identifiers whose declared cycle is remembered; each id epoch admits up to DEFAULT_MAX_IDS
# ids, so garbage traffic brings new ones every minute: the memo is emptied when this full.
MAX_CYCLE_MEMO = 4 * DEFAULT_MAX_IDS
# Cycle times are judged on the traffic of the last epoch (a minute), not the lifetime.
# Epochs (and the 10 s steps of the diagnosis's sliding minute, candiag.health.ids.
# CycleHistory) are fixed slices of time, so any batching of the frames judges alike.
CYCLE_EPOCH_S = 60.0
STEPS_PER_EPOCH = round(CYCLE_EPOCH_S / CYCLE_STEP_S)


@dataclass
class Timeline:
    """Per-second series for the offline report: node presence and key signals."""

    presence: dict[str, list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]] = field(
        default_factory=dict
    )
    signals: dict[tuple[str, str], list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]]] = (
        field(default_factory=dict)
    )

    def add(self, result: DecodeResult) -> None:
        for decoded in result.messages.values():
            if not len(decoded.index) or decoded.message.family is None:
                continue
            seconds = np.floor(decoded.timestamp).astype(np.int64)
            nodes = np.maximum(decoded.node, 0)
            for node in np.unique(nodes).tolist():
                sel = nodes == node
                label = f"{decoded.message.family.replace('_', ' ')} {node}"
                uniq, counts = np.unique(seconds[sel], return_counts=True)
                self.presence.setdefault(label, []).append((uniq, counts.astype(np.int64)))
                for sig in decoded.message.signals:
                    title = TIMELINE_ROLES.get(sig.role or "")
                    if title is None:
                        continue
                    # A multiplexed signal exists only in frames whose multiplexer selects
                    # it; the other frames carry other registers and must not be averaged in.
                    rows = sel & decoded.present[sig.name]
                    if not rows.any():
                        continue
                    values = decoded.signals[sig.name][rows].astype(np.float64)
                    uniq_s, inverse = np.unique(seconds[rows], return_inverse=True)
                    means = np.bincount(inverse, weights=values) / np.bincount(inverse)
                    key = (f"{title} ({sig.unit})" if sig.unit else title, label)
                    self.signals.setdefault(key, []).append((uniq_s, means))

    def aligned(
        self, seconds: list[int]
    ) -> tuple[dict[str, list[int]], dict[str, dict[str, list[float]]]]:
        """Presence and signal series aligned on ``seconds`` (the windows' per-second axis)."""
        axis = np.asarray(seconds, np.int64)
        nodes = {
            label: _align(axis, parts, np.int64).tolist()
            for label, parts in sorted(self.presence.items())
        }
        signals: dict[str, dict[str, list[float]]] = {}
        for (title, label), parts in sorted(self.signals.items()):
            signals.setdefault(title, {})[label] = _align(axis, parts, np.float64, np.nan).tolist()
        return nodes, signals


def _align(
    axis: npt.NDArray[np.int64],
    parts: Iterable[tuple[npt.NDArray[np.int64], npt.NDArray[Any]]],
    dtype: type[np.generic],
    fill: float = 0,
) -> npt.NDArray[Any]:
    out = np.full(axis.size, fill, dtype)
    for seconds, values in parts:
        idx = np.searchsorted(axis, seconds)
        ok = (idx < axis.size) & (axis[np.minimum(idx, axis.size - 1)] == seconds)
        out[idx[ok]] = values[ok]
    return out


class BusPipeline:
    """Everything candiag measures on one CAN bus, fed batch by batch."""

    def __init__(
        self,
        name: str,
        db: ChargerDatabase,
        *,
        bitrate: int = DEFAULT_BITRATE,
        data_bitrate: int | None = None,
        policies: Iterable[FamilyPolicy] = (),
        thresholds: HealthThresholds | None = None,
        burst_errors_per_s: int = 8,
        keep_history: bool = False,
        bitrate_known: bool = True,
        whole_capture: bool = False,
    ) -> None:
        self.name = name
        self.db = db
        self.bitrate = bitrate
        # False when the bitrate is an assumption: figures that depend on it are marked, and
        # rules give no instruction that depends on it (see candiag.analysis.BitrateChoice).
        self.bitrate_known = bitrate_known
        self.thresholds = thresholds or load_thresholds()
        self.burst_errors_per_s = burst_errors_per_s
        self.decoder = BatchDecoder(db)
        # Offline (``whole_capture``) the evidence the interval rules read covers the whole
        # capture (candiag.diagnosis.intervals); live, the last hour.
        whole = keep_history or whole_capture
        # Ids are tracked per epoch here and merged into ``health.ids`` (the lifetime).
        self.health = BusHealth(
            name,
            bitrate,
            data_bitrate,
            # The per-second windows: the window rules read them
            # (candiag.diagnosis.windowrules); the plots' Timeline only with keep_history.
            keep_history=whole,
            track_ids=False,
        )
        self.nodes = NodeTracker(db, policies)
        self.signals = SignalStats(db, history_s=None if whole else SERIES_HISTORY_S)
        # Request/response exchanges of protocol packs (offline every one, live the last hour).
        self.liveness = LivenessTracker(db, keep_history=whole)
        self.timeline = Timeline() if keep_history else None
        self.decoded_frames = 0
        self.unknown_ids = CappedIdCounter()
        self.short_frames = CappedIdCounter()
        self._cycles: dict[tuple[int, bool], float | None] = {}
        self._violations: dict[str, IdEntry] = {}
        self._violations_at: float | None = None
        self._periods_cache: tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]] | None = None
        self._previous_verdicts: tuple[IdStats | None, npt.NDArray[np.int8]] = (
            None,
            np.zeros(0, np.int8),
        )
        self._recent_ids = self.health.ids.fresh_epoch()
        self._previous_ids: IdStats | None = None
        self._step: int | None = None  # index of the current cycle step (time // step)
        # Sliding-minute cycle verdicts every step (the diagnosis's cycle-violation episodes).
        self.cycle_history = CycleHistory(None if keep_history else MAX_CYCLE_BREAKS)

    # Shortcuts to the frame-level parts (read-only use).
    @property
    def errors(self) -> ErrorFrameSummary:
        return self.health.errors

    @property
    def state(self) -> BusStateTracker:
        return self.health.state

    @property
    def windows(self) -> BusWindows:
        return self.health.windows

    @property
    def ids(self) -> IdStats:
        """Lifetime id statistics (the merged epochs plus the current one)."""
        lifetime = self.health.ids.copy()
        lifetime.merge(self._recent_ids)
        return lifetime

    @property
    def first_ts(self) -> float | None:
        return self.health.first_timestamp

    @property
    def last_ts(self) -> float | None:
        return self.health.last_timestamp

    @property
    def frames(self) -> dict[str, int]:
        f = self.health.frames
        return {"total": f["data"] + f["remote"] + f["error"], **f}

    # -- ingest ------------------------------------------------------------------------
    def process(
        self,
        batch: FrameBatch,
        *,
        bits: tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]] | None = None,
        decoded: DecodeResult | None = None,
        signal_stats: bool = True,
    ) -> DecodeResult:
        """Fold one batch into every tracker (array operations; no per-frame Python).

        ``bits`` and ``decoded``: this batch's frame bits and decode result, when the
        caller computed them (the offline analysis counts the bits in its reading thread),
        or once for a larger batch it hands over in slices (:func:`slice_decoded`).
        ``signal_stats=False``: only the facts diagnosis reads are updated here; the caller
        folds the whole batch's statistics with :meth:`fold_signal_stats`.
        """
        result = self.decoder.decode(batch) if decoded is None else decoded
        if len(batch) == 0:
            return result
        self.health.update(batch, bits)
        self._track_recent_ids(batch)
        self.decoded_frames += result.decoded_frames
        self.unknown_ids.update(result.unknown_ids)
        self.short_frames.update(result.short_frames)
        self.nodes.update(result)
        self.signals.update(result, stats=signal_stats)
        self.liveness.update(result)
        if self.timeline is not None:
            self.timeline.add(result)
        return result

    def fold_signal_stats(self, decoded: DecodeResult) -> None:
        """Signal statistics of a batch whose slices went through ``process(signal_stats=False)``."""
        self.signals.update(decoded, facts=False)

    def advance(self, now: float, judged_at: float | None = None) -> None:
        """Live bus: move windows and state time to wall time ``now``; waiting requests are
        judged at ``judged_at`` (default ``now``): no later than the frames handed over, so a
        reply still in the reader's queue never makes its request unanswered."""
        self.health.advance(now)
        self.liveness.advance(now if judged_at is None else judged_at)

    # -- views ---------------------------------------------------------------------------
    @property
    def duration_s(self) -> float:
        if self.first_ts is None or self.last_ts is None:
            return 0.0
        return self.last_ts - self.first_ts

    def window_report(self, labels: Iterable[str] = WINDOWS) -> dict[str, WindowReport]:
        out: dict[str, WindowReport] = {}
        for label in labels:
            seconds = WINDOWS[label]
            counts = self.windows.counts(seconds)
            frames = counts["frames_data"] + counts["frames_remote"]
            out[label] = WindowReport(
                frames=frames,
                frames_per_second=frames / seconds,
                error_frames={c: counts[f"errors_{c}"] for c in ERROR_CLASSES},
                error_frames_total=counts["frames_error"],
                protocol_type={name: counts[f"protocol_{name}"] for name in PROTOCOL_TYPE_FLAGS},
                bus_off=counts["bus_off_events"],
                load_ratio=round(self.windows.load_ratio(seconds), 6),
                load_ratio_max_10s=round(self._max_rolling_load(seconds, 10), 6),
            )
        return out

    def _max_rolling_load(self, window: int, span: int) -> float:
        """Highest mean load over ``span`` consecutive seconds within the last ``window`` s."""
        rows = self.windows.ring.window_rows(window)
        if rows.shape[0] == 0 or not self.bitrate:
            return 0.0
        index = self.windows.ring.index
        busy = rows[:, index["bits_nominal"]] / self.bitrate + rows[:, index["bits_data"]] / (
            self.health.data_bitrate or self.bitrate
        )
        if busy.size <= span:
            return float(busy.sum() / span)
        sums = np.convolve(busy, np.ones(span), mode="valid")
        return float(sums.max() / span)

    def error_bursts(self, window: int = 60) -> ErrorBursts:
        """Seconds in the window with a burst of protocol errors (a wrong-bitrate node)."""
        # The windows' ring counts protocol errors per second with the other classes (after
        # a PCAN layout is rewritten): one count, read here and by the window rules.
        ring = self.windows.ring
        rows = ring.window_rows(window)
        per_second = rows[:, ring.index["errors_protocol"]] if rows.size else np.zeros(0, np.int64)
        burst = per_second >= self.burst_errors_per_s
        return ErrorBursts(
            burst_seconds=int(np.count_nonzero(burst)),
            in_bursts=int(per_second[burst].sum()),
            protocol_total=int(per_second.sum()),
        )

    def ids_report(self) -> dict[str, IdEntry]:
        """Per identifier: count, period, jitter, and whether it keeps its declared cycle."""
        rows = self.ids.rows()
        if not rows:
            return {}
        ids = np.array([r.can_id for r in rows], np.uint32)
        ext = np.array([r.extended for r in rows], np.bool_)
        msg_index, node = self.db.match(ids, ext)
        checks = self._recent_cycle_checks()
        out: dict[str, IdEntry] = {}
        for i, row in enumerate(rows):
            message = self.db.messages[int(msg_index[i])] if msg_index[i] >= 0 else None
            check = checks.get((row.channel, row.can_id, row.extended, row.kind))
            key = row.id_text if row.kind == "data" else f"{row.id_text} (remote)"
            out[key] = IdEntry(
                id=row.id_text,
                extended=row.extended,
                kind=row.kind,
                name=message.name if message else None,
                family=message.family if message else None,
                node=int(node[i]) if message and node[i] >= 0 else None,
                channel=row.channel,
                count=row.count,
                first_seen=row.first_seen,
                last_seen=row.last_seen,
                mean_period_s=row.period_mean,
                jitter_s=row.period_std,
                min_period_s=row.period_min,
                max_period_s=row.period_max,
                p95_period_s=row.period_p95,
                cycle_ms=message.cycle_time_ms if message else None,
                cycle_ok=check.keeps_cycle if check else None,
                cycle_note=check.reason if check else None,
            )
        return out

    def _recent_cycle_checks(self) -> dict[tuple[str, int, bool, str], CycleCheck]:
        """Cycle verdicts over the recent epoch (the previous one where too few periods).

        Judged on recent traffic, not the lifetime: a jitter that stopped an hour ago
        is not a violation now, and a new one is not diluted by hours of good periods.
        """
        out: dict[tuple[str, int, bool, str], CycleCheck] = {}
        for stats in (self._previous_ids, self._recent_ids):
            if stats is None:
                continue
            for check in stats.check_cycles(self._cycle_of, self.thresholds.cycle):
                key = (check.row.channel, check.row.can_id, check.row.extended, check.row.kind)
                if check.keeps_cycle is not None or key not in out:
                    out[key] = check
        return out

    def _track_recent_ids(self, batch: FrameBatch) -> None:
        """Each frame into the cycle step (and epoch) of its time; late frames count in the
        current step.  A batch of many steps is one pass: its epochs are a few slices, and
        the cycle history judges all its steps at once."""
        if self._step is None:
            self._step = int(step_of(batch.timestamp).min())
        steps = step_of(batch.timestamp, self._step)
        if not bool(np.all(steps[1:] >= steps[:-1])):
            # Stable: within a step the frames keep their order.
            order = np.argsort(steps, kind="stable")
            steps, batch = steps[order], batch.take(order)
        periods = self._track_epochs(batch, steps // STEPS_PER_EPOCH)
        present = steps[run_bounds(steps)[0]]
        self.cycle_history.add(present, periods, self._match_periods, self.thresholds.cycle)
        self._step = int(present[-1])

    def _track_epochs(self, batch: FrameBatch, epochs: npt.NDArray[np.int64]) -> list[Periods]:
        """The frames (sorted by epoch) into the recent epoch's statistics; an epoch the
        batch leaves is merged into the lifetime ones.  Of the epochs it passes wholly,
        the last is kept as the previous epoch and the others go straight to the lifetime
        statistics: a few slices whatever the batch's span."""
        current = (self._step or 0) // STEPS_PER_EPOCH
        newest_epoch = int(epochs[-1])
        if newest_epoch == current:
            return [self._recent_ids.update(batch)]  # the usual case
        lifetime = self.health.ids
        cut = int(np.searchsorted(epochs, current, side="right"))
        out = [self._recent_ids.update(batch.take(slice(0, cut)))]
        lifetime.merge(self._recent_ids)
        self._previous_ids = self._recent_ids
        later = epochs[cut:]
        newest = cut + int(np.searchsorted(later, newest_epoch, side="left"))
        if newest > cut:
            before = cut + int(np.searchsorted(later, later[newest - cut - 1], side="left"))
            if before > cut:
                out.append(lifetime.update(batch.take(slice(cut, before))))
            closed = lifetime.fresh_epoch()
            out.append(closed.update(batch.take(slice(before, newest))))
            lifetime.merge(closed)
            self._previous_ids = closed
        self._recent_ids = lifetime.fresh_epoch()
        out.append(self._recent_ids.update(batch.take(slice(newest, None))))
        return out

    def cycle_breaks(self) -> list[CycleBreak]:
        """Every recorded broken-cycle stretch, and those of the minute ending now."""
        return self.cycle_history.breaks + self.cycle_history.pending(self.thresholds.cycle)

    def _cycle_of(self, can_id: int, extended: bool) -> float | None:
        key = (can_id, extended)
        if key not in self._cycles:
            if len(self._cycles) >= MAX_CYCLE_MEMO:
                self._cycles.clear()
            index, _ = self.db.match(np.array([can_id], np.uint32), np.array([extended]))
            cycle = _judged_cycle_ms(self.db.messages[int(index[0])]) if index[0] >= 0 else None
            self._cycles[key] = cycle
        return self._cycles[key]

    def cycle_violations(self, now: float) -> dict[str, IdEntry]:
        """Ids breaking their declared cycle time on recent traffic (vectorized verdicts)."""
        if self._violations_at is not None and now - self._violations_at < IDS_JUDGE_INTERVAL_S:
            return self._violations
        self._violations_at = now
        broken: list[tuple[int, IdStats, int]] = []
        recent = self._recent_ids
        judged_now = self._verdicts(recent)
        previous = self._previous_ids
        if previous is not None and len(previous):
            # The previous epoch is closed: its verdicts are judged once and kept.
            if self._previous_verdicts[0] is not previous:
                self._previous_verdicts = (previous, self._verdicts(previous))
            keys = previous.keys[self._previous_verdicts[1] == 0]
            # A verdict of the recent epoch, either way, replaces the previous one.
            keys = keys[~np.isin(keys, recent.keys[judged_now >= 0])]
            broken += [
                (k, previous, i)
                for k, i in zip(
                    keys.tolist(), np.searchsorted(previous.keys, keys).tolist(), strict=True
                )
            ]
        broken += [
            (int(recent.keys[i]), recent, i) for i in np.flatnonzero(judged_now == 0).tolist()
        ]
        out: dict[str, IdEntry] = {}
        for key, stats, i in sorted(broken, key=lambda b: b[0]):
            text, entry = self._violation_entry(key, stats, i)
            out[text] = entry
        self._violations = out
        return out

    def _verdicts(self, stats: IdStats) -> npt.NDArray[np.int8]:
        if not len(stats):
            return np.zeros(0, np.int8)
        return stats.cycle_verdicts(self._declared_periods(stats.keys), self.thresholds.cycle)

    def _declared_periods(self, keys: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        cached = self._periods_cache
        if cached is not None and cached[0].shape == keys.shape and np.array_equal(cached[0], keys):
            return cached[1]
        periods = self._match_periods(keys)
        self._periods_cache = (keys.copy(), periods)
        return periods

    def _match_periods(self, keys: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        can_id = (keys & 0x1FFFFFFF).astype(np.uint32)
        extended = ((keys >> 30) & 1).astype(np.bool_)
        index, _ = self.db.match(can_id, extended)
        cycles = np.array(
            [_judged_cycle_ms(self.db.messages[i]) or 0 if i >= 0 else 0 for i in index.tolist()],
            np.float64,
        )
        return cycles / 1000.0

    def _violation_entry(self, key: int, stats: IdStats, i: int) -> tuple[str, IdEntry]:
        can_id, extended = key & 0x1FFFFFFF, bool((key >> 30) & 1)
        index, node = self.db.match(np.array([can_id], np.uint32), np.array([extended]))
        message = self.db.messages[int(index[0])]
        n_int = int(stats.n_int[i])
        text = format_can_id(can_id, extended)
        return text, IdEntry(
            id=text,
            extended=extended,
            kind="data",
            name=message.name,
            family=message.family,
            node=int(node[0]) if node[0] >= 0 else None,
            channel=None,
            count=int(stats.count[i]),
            first_seen=None,
            last_seen=float(stats.last[i]),
            mean_period_s=float(stats.mean[i]),
            jitter_s=float(np.sqrt(stats.m2[i] / n_int)) if n_int else None,
            min_period_s=None,
            max_period_s=None,
            p95_period_s=None,
            cycle_ms=message.cycle_time_ms,
            cycle_ok=False,
            cycle_note=None,
        )

    def report(self, now: float | None = None, *, detail: bool = True) -> BusReport:
        """The bus report at ``now`` (default: the last frame).

        ``detail=False``: what the diagnosis rules read, and nothing else (evaluated often,
        kept cheap): the 10 s and 60 s windows, only the ids breaking their cycle, and no
        id table, signal statistics, decode counters, bus-state history or load figures.
        """
        now = self.last_ts if now is None else now
        now = 0.0 if now is None else now
        facts = self.signals.facts(now)
        return BusReport(
            name=self.name,
            bitrate=self.bitrate,
            bitrate_known=self.bitrate_known,
            up=True,
            state=self.state.state_name,
            bus_state=self._state_report() if detail else None,
            frames=FrameCounts(**self.frames),
            error_frames=self._error_counters(),
            bus_off_events=self.errors.by_class["bus_off"],
            bus_load=self._load_report() if detail else None,
            windows=self.window_report() if detail else self.window_report(DIAGNOSIS_WINDOWS),
            error_bursts=self.error_bursts(),
            decode=self._decode_report() if detail else None,
            ids=self.ids_report() if detail else self.cycle_violations(now),
            nodes=tuple(self.nodes.view(now)),
            firmware_mismatches=tuple(self.nodes.firmware_mismatches()),
            signals=self._signals_report(now) if detail else None,
            dropped=dict(self.health.dropped),
            dropped_recent=0,
            link=self.health.link,
            contactors=tuple(ContactorReport(**c) for c in facts["contactors"]),
            cooling=CoolingReport(**facts["cooling"]),
            currents=CurrentsReport(**facts["currents"]),
            liveness=self.liveness.report(now) if self.liveness.active else None,
            counters_falling=self.state.falling,
        )

    def _error_counters(self) -> ErrorFramesReport:
        e = self.errors
        return ErrorFramesReport(
            error_frames=e.error_frames,
            by_class=dict(e.by_class),
            controller=_nonzero(e.controller),
            protocol_type=_nonzero(e.protocol_type),
            protocol_location=_nonzero(e.protocol_location),
            transceiver=_nonzero(e.transceiver),
            lost_arbitration_bits={str(k): v for k, v in sorted(e.lost_arbitration_bits.items())},
            first_timestamp=e.first_timestamp,
            last_timestamp=e.last_timestamp,
            tec_max=e.tec_max or 0,
            rec_max=e.rec_max or 0,
            tec_last=e.tec_last or 0,
            rec_last=e.rec_last or 0,
            counters=ErrorCounters(
                tec_max=e.tec_max,
                rec_max=e.rec_max,
                tec_last=e.tec_last,
                rec_last=e.rec_last,
                frames_flagged=e.counter_frames_flagged,
                frames_unflagged_nonzero=e.counter_frames_unflagged,
                unflagged_tec_last=e.unflagged_tec_last,
                unflagged_rec_last=e.unflagged_rec_last,
            ),
        )

    def _state_report(self) -> BusStateReport:
        st = self.state
        return BusStateReport(
            sources=tuple(sorted(st.sources)),
            state=st.state_name,
            state_since=st.state_since,
            bus_off_events=st.bus_off_events,
            restarts=st.restarts,
            transitions=st.transitions,
            tec=st.tec,
            rec=st.rec,
            seconds_in_state={
                name: float(st.seconds_in_state[i]) for i, name in enumerate(BUS_STATES)
            },
            changes=tuple(st.changes),
        )

    def _decode_report(self) -> DecodeReport:
        return DecodeReport(
            decoded_frames=self.decoded_frames,
            unknown_frames=self.unknown_ids.total(),
            unknown_ids={
                id_key_text(i): n for i, n in self.unknown_ids.counts.most_common(TOP_UNKNOWN_IDS)
            },
            short_frames={id_key_text(i): n for i, n in self.short_frames.counts.items()},
            # Frames of ids beyond the caps: in the totals, not itemized above.
            untracked_frames=self.unknown_ids.untracked + self.short_frames.untracked,
        )

    def _signals_report(self, now: float) -> dict[str, SignalReport]:
        return {
            s.key: SignalReport(
                message=s.message,
                signal=s.signal,
                node=None if s.node < 0 else s.node,
                unit=s.unit,
                role=s.role,
                count=s.count,
                min=_finite(s.minimum),
                max=_finite(s.maximum),
                mean=_finite(s.total / s.count) if s.count else None,
                last=_finite(s.last),
                last_ts=_finite(s.last_ts),
                stale=s.stale(now),
            )
            for _, s in sorted(self.signals.stats.items())
        }

    def _load_report(self) -> LoadReport:
        mean = self.health.mean_load_ratio()
        span = self.health.load_span_s()
        return LoadReport(
            bitrate=self.bitrate,
            bitrate_known=self.bitrate_known,
            data_bitrate=self.health.data_bitrate,
            # None: no figure (capture too short, see note); never a load over 100 %.
            mean_ratio=round(mean, 6) if mean is not None else None,
            max_ratio_1s=round(self.windows.max_ratio_1s(), 6),
            span_s=round(span, 6) if span is not None else None,
            overfull_seconds=self.windows.overfull_seconds,
            note=self.health.load_note(),
        )

    def timeline_report(self) -> TimelineReport:
        """Per-second series for plots (node presence and signals need ``keep_history=True``)."""
        series = self.windows.plot_series()
        seconds = [int(s) for s in series["second"]]
        nodes, signals = self.timeline.aligned(seconds) if self.timeline else (None, None)
        return TimelineReport(
            t=tuple(seconds),
            load_ratio=tuple(series.get("load_ratio", [])),
            errors={c: series[f"errors_{c}"] for c in ERROR_CLASSES},
            nodes=nodes,
            signals=signals,
            bus=self.name,
        )


def _nonzero(counts: Mapping[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _judged_cycle_ms(message: MessageDef) -> int | None:
    """The cycle time an id is judged against: none for a protocol pack's requests and
    replies, whose timing is the controller's polling, judged per module by the liveness
    findings (candiag/liveness) rather than per identifier."""
    if message.direction in ("request", "reply", "both"):
        return None
    return message.cycle_time_ms


def slice_decoded(result: DecodeResult, lo: int, hi: int, *, totals: bool) -> DecodeResult:
    """The part of ``result`` for frames ``[lo, hi)`` of the batch it decoded.

    Frame indices are re-based to the slice.  ``totals``: carry the batch's counters
    (decoded, unknown, short, error, remote frames) in this slice; give them to exactly
    one slice so they are counted once.
    """
    messages: dict[str, DecodedMessage] = {}
    for name, m in result.messages.items():
        a, b = np.searchsorted(m.index, (lo, hi)).tolist()
        if a == b:
            continue
        messages[name] = DecodedMessage(
            message=m.message,
            index=m.index[a:b] - lo,
            timestamp=m.timestamp[a:b],
            node=m.node[a:b],
            signals=_SlicedColumns(m.signals, a, b),
            present=_SlicedColumns(m.present, a, b),
            exchange=m.exchange.slice(a, b) if m.exchange is not None else None,  # liveness
        )
    return DecodeResult(
        messages=messages,
        decoded_frames=result.decoded_frames if totals else 0,
        unknown_ids=result.unknown_ids if totals else Counter(),
        short_frames=result.short_frames if totals else Counter(),
        error_frames=result.error_frames if totals else 0,
        remote_frames=result.remote_frames if totals else 0,
    )


class _SlicedColumns(Mapping[str, npt.NDArray[Any]]):
    """Rows ``[a, b)`` of every column, sliced when a column is read.

    A step reads a few signals of a message (roles, facts); slicing all of them up front
    cost more than the rest of the step's decode bookkeeping.
    """

    __slots__ = ("_a", "_b", "_columns")

    def __init__(self, columns: Mapping[str, npt.NDArray[Any]], a: int, b: int) -> None:
        self._columns, self._a, self._b = columns, a, b

    def __getitem__(self, key: str) -> npt.NDArray[Any]:
        return self._columns[key][self._a : self._b]

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)
