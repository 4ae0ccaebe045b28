"""Sliding windows (10 s, 60 s, 300 s, 3600 s) over per-second ring buckets, vectorized.

Owns :class:`SecondRing`, a fixed ``int64[horizon, k]`` array of per-second totals (memory set
by the longest window, whatever the traffic), and :class:`BusWindows`, which feeds it from
frame batches: frames per kind, bits at nominal and data rate, error frames per class (the ten
SocketCAN classes and ``unclassified``), protocol errors per violation type (bit0/bit1: a node that
cannot drive a bus level), bus-off events, and frames the host dropped before candiag saw
them (live only: :meth:`BusWindows.add_dropped`).  The diagnosis's window rules read these
columns second by second (:mod:`candiag.diagnosis.windowrules`).  Updating costs one bincount per
column over the batch; a window query sums at most ``horizon`` rows.

Time is integer seconds of the frame timestamps, so the same code serves live buses (time
advances, buckets expire, :meth:`BusWindows.advance` moves "now" when nothing arrives) and
captures (timestamps from the file, starting anywhere, with gaps of any length).  Frames
older than the ring when they arrive cannot be placed and are counted in ``late_dropped``.
With ``keep_history`` every expired second is kept (sparse), for the report's plots of long
captures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from candiag.health.busload import frame_bits
from candiag.health.errorframes import ERROR_CLASSES, unclassified_mask
from candiag.health.jsontypes import JsonObject
from candiag.ingest.frames import FLAG_ERROR, FLAG_REMOTE, FrameBatch
from candiag.socketcan_errors import CAN_ERR_PROT, PROTOCOL_TYPE_FLAGS, SOCKETCAN_CLASSES

WINDOWS: dict[str, int] = {"10s": 10, "60s": 60, "300s": 300, "3600s": 3600}
HORIZON = max(WINDOWS.values())

I64 = npt.NDArray[np.int64]


class SecondRing:
    """Per-second totals of ``k`` integer columns for the last ``horizon`` seconds."""

    def __init__(self, columns: Sequence[str], horizon: int = HORIZON, keep_history: bool = False):
        self.columns = tuple(columns)
        self.index = {name: i for i, name in enumerate(self.columns)}
        self.horizon = horizon
        self.buckets = np.zeros((horizon, len(self.columns)), np.int64)
        self.head: int | None = None  # newest second held (inclusive)
        self.first: int | None = None  # oldest second ever seen
        self.late_dropped = np.zeros(len(self.columns), np.int64)
        self.peak = np.zeros(len(self.columns), np.int64)
        self.keep_history = keep_history
        self._history: list[tuple[I64, I64]] = []

    @property
    def nbytes(self) -> int:
        return int(self.buckets.nbytes + self.late_dropped.nbytes + self.peak.nbytes)

    def _expire(self, old_head: int, new_head: int) -> tuple[I64, I64]:
        """Clear the buckets reused by seconds (old_head, new_head]; return what they held."""
        h = self.horizon
        lo = old_head - h + 1
        hi = min(new_head - h, old_head)  # last expiring second
        seconds = np.arange(lo, hi + 1, dtype=np.int64)
        rows = seconds % h
        values = self.buckets[rows].copy()
        self.buckets[rows] = 0
        keep = values.any(axis=1)
        return seconds[keep], values[keep]

    def advance_to(self, second: int) -> None:
        """Move "now" to ``second`` (no-op if not newer), expiring older buckets."""
        self._advance(second, np.empty(0, np.int64), np.empty((0, len(self.columns)), np.int64))

    def _advance(self, second: int, old_s: I64, old_v: I64) -> tuple[I64, I64]:
        """Move the head; ``old_s``/``old_v`` leave straight to history.  Returns their
        whole totals (with what the ring held of those seconds)."""
        if self.head is None:
            self.head = second
            if self.keep_history and old_s.size:  # a first batch longer than the horizon
                self._history.append((old_s, old_v))
            return old_s, old_v
        if second <= self.head:
            return old_s, old_v
        exp_s, exp_v = self._expire(self.head, second)
        self.head = second
        if not (exp_s.size or old_s.size):
            return old_s, old_v
        merged_s, merged_v = _merge_sparse([(exp_s, exp_v), (old_s, old_v)])
        if self.keep_history:
            self._history.append((merged_s, merged_v))
        whole = np.isin(merged_s, old_s)
        return merged_s[whole], merged_v[whole]

    def add(self, seconds: I64, totals: I64) -> tuple[I64, I64]:
        """Add per-second totals: ``seconds`` (unique, any order) and ``totals`` ``[m, k]``.

        Returns the seconds that were older than the ring's new window but on time (a
        batch longer than the horizon), with their whole totals: they went straight to
        history, and a caller reading the ring for them would not find them."""
        empty = np.empty(0, np.int64), np.empty((0, len(self.columns)), np.int64)
        if seconds.size == 0:
            return empty
        newest = int(seconds.max())
        self.first = (
            int(seconds.min()) if self.first is None else min(self.first, int(seconds.min()))
        )
        new_head = newest if self.head is None else max(self.head, newest)
        oldest_kept = new_head - self.horizon + 1
        in_ring = seconds >= oldest_kept
        # Seconds older than the new window: still "on time" if the old window held them, or
        # if there was none yet (they leave straight to history), otherwise too late to be
        # placed anywhere.
        previous_oldest = int(seconds.min()) if self.head is None else self.head - self.horizon + 1
        passing = ~in_ring & (seconds >= previous_oldest)
        late = ~in_ring & ~passing
        if late.any():
            self.late_dropped += totals[late].sum(axis=0)
        passed = self._advance(new_head, seconds[passing], totals[passing])
        rows = seconds[in_ring] % self.horizon
        self.buckets[rows] += totals[in_ring]  # seconds are unique, so rows are too
        if rows.size:
            self.peak = np.maximum(self.peak, self.buckets[rows].max(axis=0))
        if passed[0].size:
            self.peak = np.maximum(self.peak, passed[1].max(axis=0))
        return passed

    def _span(self, window: int, end: int | None = None) -> tuple[int, int] | None:
        """First and last second of ``(end - window, end]`` the ring holds, if any."""
        if self.head is None:
            return None
        end = self.head if end is None else min(end, self.head)
        start = max(end - min(window, self.horizon) + 1, self.head - self.horizon + 1)
        if self.first is not None:
            start = max(start, self.first)
        return None if end < start else (start, end)

    def _blocks(self, span: tuple[int, int] | None) -> list[I64]:
        """The buckets of the seconds of ``span``, oldest first, as (at most two) views:
        slices instead of a gather, as the ring is read every loop (the window rules)."""
        if span is None:
            return []
        start, end = span
        h = self.horizon
        first, n = start % h, end - start + 1
        if first + n <= h:
            return [self.buckets[first : first + n]]
        return [self.buckets[first:], self.buckets[: n - (h - first)]]

    def window_sum(self, window: int, end: int | None = None) -> I64:
        """Column totals over the seconds ``(end - window, end]`` (``end`` defaults to now)."""
        total: I64 = np.zeros(len(self.columns), np.int64)
        for block in self._blocks(self._span(window, end)):
            total += block.sum(axis=0)
        return total

    def window_rows(self, window: int, end: int | None = None) -> I64:
        """The per-second rows of the seconds ``(end - window, end]``, oldest first."""
        blocks = self._blocks(self._span(window, end))
        if not blocks:
            return np.zeros((0, len(self.columns)), np.int64)
        rows: I64 = np.concatenate(blocks)
        return rows

    def covered_seconds(self, window: int, end: int | None = None) -> int:
        """How many seconds of the window lie after the first second ever seen."""
        span = self._span(window, end)
        return 0 if span is None else span[1] - span[0] + 1

    def series(self) -> tuple[I64, I64]:
        """Every second with data, oldest first: ``(seconds, values[m, k])``; absent seconds are 0.

        Without ``keep_history`` this covers the ring (the last ``horizon`` seconds).
        """
        parts = list(self._history)
        span = self._span(self.horizon)
        if span is not None:
            values = np.concatenate(self._blocks(span))
            keep = np.flatnonzero(values.any(axis=1))
            parts.append((keep.astype(np.int64) + span[0], values[keep]))
        if not parts:
            return np.empty(0, np.int64), np.empty((0, len(self.columns)), np.int64)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _merge_sparse(parts: Sequence[tuple[I64, I64]]) -> tuple[I64, I64]:
    """The per-second rows of all ``parts``, one row per second (sorted), values of a
    second summed.

    A sort and one ``add.reduceat`` over all columns: ``np.add.at`` cost 0.3 s of 100 h of
    the benchmark capture, whose batches each pass an hour of seconds to history."""
    seconds = np.concatenate([p[0] for p in parts])
    values = np.concatenate([p[1] for p in parts])
    if seconds.size == 0:
        return seconds, values
    order = np.argsort(seconds, kind="stable")
    seconds, values = seconds[order], values[order]
    new = np.ones(seconds.size, np.bool_)
    new[1:] = seconds[1:] != seconds[:-1]
    if new.all():
        return seconds, values  # the usual case: no second in both
    starts = np.flatnonzero(new)
    summed: I64 = np.add.reduceat(values, starts, axis=0)
    return seconds[starts], summed


def per_second_totals(
    seconds: I64, columns: Sequence[npt.NDArray[Any] | None], *, k: int | None = None
) -> tuple[I64, I64]:
    """Aggregate rows into per-second totals: ``(unique seconds, totals[m, k])``.

    ``columns[j]`` is the per-row weight of column ``j`` (``None``: count rows).  Uses a dense
    bincount when the batch spans few seconds, ``np.unique`` when it spans a long gap.
    """
    k = len(columns) if k is None else k
    if seconds.size == 0:
        return np.empty(0, np.int64), np.empty((0, k), np.int64)
    lo = int(seconds.min())
    span = int(seconds.max()) - lo + 1
    if span <= max(4 * HORIZON, seconds.size):
        slot = (seconds - lo).astype(np.intp)
        n_slots = span
    else:
        uniq, inverse = np.unique(seconds, return_inverse=True)
        slot, n_slots = inverse.astype(np.intp), int(uniq.size)
    totals = np.zeros((n_slots, k), np.int64)
    for j, weights in enumerate(columns):
        totals[:, j] = np.bincount(slot, weights=weights, minlength=n_slots)[:n_slots]
    if n_slots == span:
        keep = totals.any(axis=1)
        return np.flatnonzero(keep).astype(np.int64) + lo, totals[keep]
    return uniq.astype(np.int64), totals


# Above this one-second load the timestamps (or the bitrate) are wrong: see BusWindows._ratios.
OVERFULL_RATIO = 1.02

# Protocol-violation types counted per second (data[2]): bit0/bit1 errors are a
# transceiver that cannot drive the level (the CAN_ERR_TRX rule reads them with the
# transceiver class); the others are the evidence a technician reads.
PROTOCOL_TYPE_COLUMNS: tuple[str, ...] = tuple(PROTOCOL_TYPE_FLAGS)
BUS_COLUMNS: tuple[str, ...] = (
    "frames_data",
    "frames_remote",
    "frames_error",
    "bits_nominal",
    "bits_data",
    *(f"errors_{c}" for c in ERROR_CLASSES),
    "bus_off_events",
    *(f"protocol_{t}" for t in PROTOCOL_TYPE_COLUMNS),
    "frames_dropped",
)
_ERROR_COLUMNS = slice(5, 5 + len(ERROR_CLASSES))
_BUS_OFF = BUS_COLUMNS.index("bus_off_events")
_PROTOCOL_TYPES = slice(_BUS_OFF + 1, _BUS_OFF + 1 + len(PROTOCOL_TYPE_COLUMNS))
_DROPPED = BUS_COLUMNS.index("frames_dropped")


class BusWindows:
    """The sliding-window figures of one bus: frames, bits/load, error classes, bus-off events."""

    def __init__(
        self,
        bitrate: int | None = None,
        data_bitrate: int | None = None,
        *,
        horizon: int = HORIZON,
        keep_history: bool = False,
    ) -> None:
        self.bitrate = bitrate
        self.data_bitrate = data_bitrate or bitrate
        self.ring = SecondRing(BUS_COLUMNS, horizon, keep_history)
        self.max_ratio_1s_seen = 0.0  # capped at the bus capacity (see _ratios)
        # Seconds whose frames carry more bits than the bus can in one second: their
        # timestamps are not bus time (host buffering) or the bitrate is wrong.
        self.overfull_seconds = 0
        self.max_raw_ratio_1s_seen = 0.0
        self._last_overfull = -(1 << 62)
        self.last_timestamp: float | None = None

    @property
    def nbytes(self) -> int:
        return self.ring.nbytes

    def update(
        self,
        batch: FrameBatch,
        bits: tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]] | None = None,
        bus_off_times: npt.NDArray[np.float64] | None = None,
    ) -> None:
        """Add one batch; ``bits`` from :func:`~candiag.health.busload.frame_bits` if already known."""
        if len(batch) == 0 and (bus_off_times is None or bus_off_times.size == 0):
            return
        if bits is None:
            bits = frame_bits(batch)
        seconds = np.floor(batch.timestamp).astype(np.int64)
        flags = batch.flags
        error = (flags & FLAG_ERROR) != 0
        remote = ((flags & FLAG_REMOTE) != 0) & ~error
        k = len(BUS_COLUMNS)
        uniq, totals = per_second_totals(
            seconds,
            [
                (~error & ~remote).astype(np.float64),
                remote.astype(np.float64),
                error.astype(np.float64),
                bits[0].astype(np.float64),
                bits[1].astype(np.float64),
            ],
            k=k,
        )
        # One add for frames, error classes and bus-off events: a batch spanning more than
        # the horizon moves the ring on, and a second add of its first seconds would come
        # too late for the ring (and its history).
        parts = [(uniq, totals)]
        rows = np.flatnonzero(error)
        if rows.size:
            parts.append(self._error_totals(batch, rows, seconds[rows]))
        if bus_off_times is not None and bus_off_times.size:
            events = np.floor(bus_off_times).astype(np.int64)
            uniq_b, totals_b = per_second_totals(events, [None], k=1)
            full = np.zeros((uniq_b.size, k), np.int64)
            full[:, _BUS_OFF] = totals_b[:, 0]
            parts.append((uniq_b, full))
        passed_s, passed_v = self.ring.add(*(_merge_sparse(parts) if len(parts) > 1 else parts[0]))
        if len(batch):
            newest = float(batch.timestamp.max())
            self.last_timestamp = (
                newest if self.last_timestamp is None else max(self.last_timestamp, newest)
            )
        if self.bitrate:
            self._note_peak(uniq, passed_s, passed_v)

    def _error_totals(
        self, batch: FrameBatch, rows: npt.NDArray[np.intp], seconds: I64
    ) -> tuple[I64, I64]:
        """Error frames per class and the protocol errors' types, per second (ring columns)."""
        ids = batch.can_id[rows]
        weights: list[npt.NDArray[Any]] = [
            ((ids >> b) & 1).astype(np.float64) for b in range(len(SOCKETCAN_CLASSES))
        ]
        weights.append(unclassified_mask(ids).astype(np.float64))
        # data[2] is the violation type only when the protocol class bit is set.
        types = np.where((ids & CAN_ERR_PROT) != 0, batch.data[rows, 2], 0)
        weights += [
            ((types & PROTOCOL_TYPE_FLAGS[t]) != 0).astype(np.float64)
            for t in PROTOCOL_TYPE_COLUMNS
        ]
        uniq, part = per_second_totals(seconds, weights)
        totals = np.zeros((uniq.size, len(BUS_COLUMNS)), np.int64)
        totals[:, _ERROR_COLUMNS] = part[:, : len(ERROR_CLASSES)]
        totals[:, _PROTOCOL_TYPES] = part[:, len(ERROR_CLASSES) :]
        return uniq, totals

    def add_dropped(self, now: float, frames: int) -> None:
        """Frames the host dropped (socket queue, interface) noticed at live time ``now``."""
        if frames <= 0:
            return
        totals = np.zeros((1, len(BUS_COLUMNS)), np.int64)
        totals[0, _DROPPED] = frames
        self.ring.add(np.array([int(np.floor(now))], np.int64), totals)

    def _raw_ratios(self, rows: I64) -> npt.NDArray[np.float64]:
        assert self.bitrate and self.data_bitrate
        i, j = self.ring.index["bits_nominal"], self.ring.index["bits_data"]
        ratios: npt.NDArray[np.float64] = rows[:, i] / self.bitrate + rows[:, j] / self.data_bitrate
        return ratios

    def _ratios(self, rows: I64) -> npt.NDArray[np.float64]:
        """Load per row, capped at 1: a bus cannot carry more than its bitrate.

        More bits than that in one second means the timestamps bunch frames that were on the
        wire earlier (host buffering) or the bitrate is wrong; :attr:`overfull_seconds`
        counts such seconds so a report can say so instead of showing a load over 100 %.
        """
        ratios: npt.NDArray[np.float64] = np.minimum(self._raw_ratios(rows), 1.0)
        return ratios

    def _note_peak(self, seconds: I64, passed_s: I64, passed_v: I64) -> None:
        """The 1 s load of the batch's seconds: read in the ring, or given whole for those
        that went straight to its history (a batch longer than the horizon)."""
        if seconds.size == 0 or self.ring.head is None:
            return
        fresh = seconds[seconds > self.ring.head - self.ring.horizon]
        rows = self.ring.buckets[fresh % self.ring.horizon]
        if passed_s.size:
            fresh, rows = np.concatenate((passed_s, fresh)), np.concatenate((passed_v, rows))
        if fresh.size == 0:
            return
        raw = self._raw_ratios(rows)
        peak = float(raw.max())
        self.max_raw_ratio_1s_seen = max(self.max_raw_ratio_1s_seen, peak)
        self.max_ratio_1s_seen = max(self.max_ratio_1s_seen, min(peak, 1.0))
        # A frame straddling a second boundary is counted in the second it ends in, so a
        # fully loaded bus can show a few frames' worth over 100 %; only more is overfull.
        over = fresh[raw > OVERFULL_RATIO]
        over = over[over > self._last_overfull]  # a second updated again is counted once
        if over.size:
            self.overfull_seconds += int(np.unique(over).size)
            self._last_overfull = int(over.max())

    def advance(self, now: float) -> None:
        """Live bus: move the windows to wall time ``now`` (buckets of silent seconds expire)."""
        self.ring.advance_to(int(np.floor(now)))

    def counts(self, window: int) -> dict[str, int]:
        """Totals over the last ``window`` seconds, current (partial) second included."""
        total = self.ring.window_sum(window)
        return {name: int(total[i]) for i, name in enumerate(BUS_COLUMNS)}

    def error_counts(self, window: int) -> dict[str, int]:
        """Error frames per class over the last ``window`` seconds."""
        counts = self.counts(window)
        return {c: counts[f"errors_{c}"] for c in ERROR_CLASSES}

    def _complete_end(self) -> int | None:
        head = self.ring.head
        if head is None:
            return None
        # The current second is still filling; use it only when it is all there is.
        return head - 1 if self.ring.first is not None and head > self.ring.first else head

    def load_ratio(self, window: int) -> float:
        """Mean bus load over the last ``window`` complete seconds (those after the first frame)."""
        if not self.bitrate:
            raise ValueError("load ratio needs the bitrate: BusWindows(bitrate=...)")
        end = self._complete_end()
        if end is None:
            return 0.0
        covered = self.ring.covered_seconds(window, end)
        if covered == 0:
            return 0.0
        total = self.ring.window_sum(window, end)
        busy = self._raw_ratios(total[None, :])[0]
        return float(min(busy / covered, 1.0))

    def max_ratio_1s(self, window: int | None = None) -> float:
        """Highest one-second load in the last ``window`` seconds (all time when ``None``)."""
        if not self.bitrate:
            raise ValueError("load ratio needs the bitrate: BusWindows(bitrate=...)")
        if window is None:
            return self.max_ratio_1s_seen
        rows = self.ring.window_rows(window)
        return float(self._ratios(rows).max()) if rows.size else 0.0

    def load_ratios(self, rows: I64) -> npt.NDArray[np.float64]:
        """The load of each row of :meth:`SecondRing.series` (needs a bitrate)."""
        return self._ratios(rows)

    def plot_series(self) -> dict[str, Any]:
        """Per-second series for plots: ``{"second": [...], column: [...], "load_ratio": [...]}``."""
        seconds, values = self.ring.series()
        out: dict[str, Any] = {"second": seconds.tolist()}
        for i, name in enumerate(BUS_COLUMNS):
            out[name] = values[:, i].tolist()
        if self.bitrate:
            out["load_ratio"] = self._ratios(values).tolist()
        return out

    def to_json(self) -> JsonObject:
        out: dict[str, Any] = {"source": "frames", "windows": {}}
        for label, seconds in WINDOWS.items():
            entry: dict[str, Any] = {"counts": self.counts(seconds)}
            if self.bitrate:
                entry["load_ratio"] = self.load_ratio(seconds)
                entry["max_ratio_1s"] = self.max_ratio_1s(seconds)
            out["windows"][label] = entry
        if self.bitrate:
            out["max_ratio_1s"] = self.max_ratio_1s_seen
        out["late_dropped_frames"] = int(self.ring.late_dropped[:3].sum())
        return out
