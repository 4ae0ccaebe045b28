"""What the signal rules read, recorded while the frames go by (issue 15).

The interval rules of :mod:`candiag.diagnosis.signalrules` (``CAN_NODE_ALARM_*``,
``COOLING_*``, ``METER_REVERSED``) judge a bus's timeline, not the values of one instant.
:class:`SignalEvidence` keeps what they need, folded per decoded batch with array
operations (a loop per node and alarm only where an alarm bit is set or was set):

* per node and alarm bit (:data:`RECORDED_ALARMS`): every interval the bit was set, exact
  to the frames, cut where the node's message went stale (:class:`AlarmTrace`);
* per role signal (:data:`SERIES_ROLES`) and node: each second's last value and its
  frame's time (:class:`RoleSeries`), so freshness is judged exactly when read.

Bounded live (the last hour of series, the newest :data:`MAX_INTERVALS` intervals per
alarm bit), the whole capture offline (``history_s`` None).  Owned by
:class:`candiag.health.signals.SignalStats` (``evidence``); read through
:func:`candiag.diagnosis.timeline.bus_timeline` (docs/diagnosis.md, "Signal rules").
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from candiag.health.arrays import run_bounds

if TYPE_CHECKING:
    from candiag.decode.dbc import ChargerDatabase, MessageDef
    from candiag.decode.decoder import DecodedMessage

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

# Live, the per-second series cover the last hour (as the windows' ring does); offline
# (``history_s`` None) the whole capture.
SERIES_HISTORY_S = 3600.0
# Intervals remembered per alarm bit and node (a flapping bit keeps its newest ones).
MAX_INTERVALS = 1000

# Roles whose values those rules read at every second's end.
SERIES_ROLES = (
    "output_current",
    "meter:current",
    "cooling:pump_command",
    "cooling:flow",
    "cooling:coolant_temperature",
)
# Alarm bits whose intervals are recorded (roles ``alarm:NAME``): those the node-alarm rules
# read (candiag/diagnosis/signalrules.py ALARM_CODES).
RECORDED_ALARMS = frozenset({"communication_interrupt", "over_temperature", "fan"})
# Chunks appended before a series is compacted into one array.
_SERIES_CHUNKS = 64
# A value is stale (its message stopped coming) after this many cycle times (1 s if none),
# as :meth:`candiag.health.signals.SignalStat.is_fresh` judges it.
STALE_CYCLES = 3.0


def stale_after(cycle_s: float | None) -> float:
    """Seconds without a frame after which a signal's last value is history, not the present."""
    return STALE_CYCLES * (cycle_s or 1.0)


@dataclass(frozen=True)
class RoleSeries:
    """One role signal of one node, per second: the last value of each second that had a
    frame, and that frame's time (so freshness is judged exactly, not per second)."""

    role: str
    message: str
    signal: str
    node: int  # -1 when the message carries no node address
    unit: str
    stale_after_s: float
    seconds: I64
    values: F64
    times: F64


@dataclass
class _SecondSeries:
    """Appends one signal's frames (every node of its message) batch by batch, keeping each
    node's last value of each second.

    A batch costs a few array operations whatever the number of nodes: its rows wait in
    ``_pending`` and are split by node every :data:`_SERIES_CHUNKS` batches (one sort of
    those rows only), so neither a long capture nor a long-running daemon re-sorts what
    it already holds.
    """

    role: str
    message: str
    signal: str
    unit: str
    stale_after_s: float
    history_s: float | None
    _pending: list[tuple[I64, I64, F64, F64]] = field(default_factory=list)
    # node -> blocks of (seconds, values, times), each in time order.
    _by_node: dict[int, list[tuple[I64, F64, F64]]] = field(default_factory=dict)
    _newest: int | None = None

    def add(self, nodes: I64, ts: F64, values: F64) -> None:
        """Fold frames in (any order): one row per node and second, its last frame."""
        if not len(ts):
            return
        if not (_is_sorted(ts) and bool((nodes == nodes[0]).all())):
            order = np.lexsort((ts, nodes))
            nodes, ts, values = nodes[order], ts[order], values[order]
        seconds = np.floor(ts).astype(np.int64)
        last = _last_of_runs(nodes, seconds)
        self._pending.append((nodes[last], seconds[last], values[last], ts[last]))
        if len(self._pending) > _SERIES_CHUNKS:
            self._flush()

    def _flush(self) -> None:
        """Hand the pending rows to their nodes; live, forget what is older than history."""
        if self._pending:
            nodes, seconds, values, times = (
                np.concatenate([c[k] for c in self._pending]) for k in range(4)
            )
            self._pending = []
            order = np.lexsort((times, nodes))
            nodes, seconds, values, times = (
                nodes[order],
                seconds[order],
                values[order],
                times[order],
            )
            starts, stops = run_bounds(nodes)
            for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
                blocks = self._by_node.setdefault(int(nodes[a]), [])
                blocks.append((seconds[a:b], values[a:b], times[a:b]))
                if len(blocks) > _SERIES_CHUNKS:
                    blocks[:] = [_joined(blocks)]
            newest = int(seconds.max())
            self._newest = newest if self._newest is None else max(self._newest, newest)
        if self.history_s is not None and self._newest is not None:
            oldest = self._newest - self.history_s
            for blocks in self._by_node.values():
                blocks[:] = [b for b in blocks if b[0].size and b[0][-1] > oldest]

    @property
    def nbytes(self) -> int:
        """Bytes the series holds (pending rows and every node's blocks)."""
        held = [a for c in self._pending for a in c]
        held += [a for blocks in self._by_node.values() for b in blocks for a in b]
        return int(sum(a.nbytes for a in held))

    def frozen(self) -> list[RoleSeries]:
        """One series per node, in node order."""
        self._flush()
        out = []
        for node in sorted(self._by_node):
            blocks = self._by_node[node]
            if not blocks:
                continue
            seconds, values, times = blocks[0] if len(blocks) == 1 else _joined(blocks)
            if not _is_sorted(times):
                order = np.argsort(times, kind="stable")
                seconds, values, times = seconds[order], values[order], times[order]
            last = np.flatnonzero(np.concatenate((seconds[1:] != seconds[:-1], [True])))
            seconds, values, times = seconds[last], values[last], times[last]
            if self.history_s is not None and self._newest is not None:
                recent = seconds > self._newest - self.history_s
                seconds, values, times = seconds[recent], values[recent], times[recent]
            self._by_node[node] = [(seconds, values, times)]
            if seconds.size:
                out.append(
                    RoleSeries(
                        self.role,
                        self.message,
                        self.signal,
                        node,
                        self.unit,
                        self.stale_after_s,
                        seconds,
                        values,
                        times,
                    )
                )
        return out


def _joined(blocks: Sequence[tuple[I64, F64, F64]]) -> tuple[I64, F64, F64]:
    return (
        np.concatenate([b[0] for b in blocks]),
        np.concatenate([b[1] for b in blocks]),
        np.concatenate([b[2] for b in blocks]),
    )


def _last_of_runs(nodes: I64, seconds: I64) -> npt.NDArray[np.intp]:
    """The last row of each (node, second) run of rows sorted by node, then time."""
    change = (nodes[1:] != nodes[:-1]) | (seconds[1:] != seconds[:-1])
    return np.flatnonzero(np.concatenate((change, [True])))


@dataclass(frozen=True)
class AlarmTrace:
    """The intervals one alarm bit of one node was set in one message, exact to the frames.

    Each interval runs from the first frame with the bit set to the first frame with it
    clear; when the message stopped coming for longer than ``stale_after_s`` while the bit
    was set, it ends at the last frame that had it set (a silent node's last value is not
    evidence).  ``end`` None: still set in a fresh frame at the end of the data.
    """

    family: str
    address: int
    alarm: str
    message: str
    intervals: tuple[tuple[float, float | None], ...]
    last_seen: float | None


@dataclass
class _AlarmTrack:
    family: str
    address: int
    alarm: str
    message: str
    stale_after_s: float
    intervals: list[tuple[float, float]] = field(default_factory=list)
    open_since: float | None = None
    last_ts: float | None = None  # the message's newest frame from this node, while set

    def feed(self, ts: F64, on: Bools, known: Bools | None = None) -> None:
        """Fold in the bit's value in each frame of the message (``ts`` sorted).

        ``known``: the frames that carry the bit (a multiplexed signal is in some frames
        only); the others only tell that the node still sends, and keep its last value.
        """
        before = -np.inf if self.last_ts is None else self.last_ts
        prev_t = np.concatenate(([before], ts[:-1]))
        silent = ts - prev_t > self.stale_after_s
        carries = np.flatnonzero(known) if known is not None else np.arange(len(ts))
        # Frames that may change the state: a silence, and each carrying frame whose value
        # differs from the previous carrying one or that is the first after a silence.
        values = on[carries]
        segment = np.cumsum(silent)[carries]
        changed = np.ones(len(carries), np.bool_)
        changed[1:] = (values[1:] != values[:-1]) | (segment[1:] != segment[:-1])
        candidates = np.union1d(np.flatnonzero(silent), carries[changed])
        carrying = np.zeros(len(ts), np.bool_)
        carrying[carries] = True
        for i in candidates.tolist():
            if silent[i] and self.open_since is not None:
                # The frames stopped: the last one before the silence is the last evidence.
                self.intervals.append((self.open_since, float(prev_t[i])))
                self.open_since = None
            if not carrying[i]:
                continue
            if on[i] and self.open_since is None:
                self.open_since = float(ts[i])
            elif not on[i] and self.open_since is not None:
                self.intervals.append((self.open_since, float(ts[i])))
                self.open_since = None
        self.last_ts = float(ts[-1])
        if len(self.intervals) > MAX_INTERVALS:
            del self.intervals[: len(self.intervals) - MAX_INTERVALS]

    def trace(self, now: float | None) -> AlarmTrace:
        intervals: list[tuple[float, float | None]] = list(self.intervals)
        if self.open_since is not None:
            last = self.last_ts if self.last_ts is not None else self.open_since
            stale = now is not None and now - last > self.stale_after_s
            intervals.append((self.open_since, last if stale else None))
        return AlarmTrace(
            self.family, self.address, self.alarm, self.message, tuple(intervals), self.last_ts
        )


@dataclass
class SignalEvidence:
    """What the signal rules read, recorded per decoded batch: the intervals of the alarm
    bits in :data:`RECORDED_ALARMS` per node, and the :data:`SERIES_ROLES` signals per
    second."""

    db: ChargerDatabase
    history_s: float | None = SERIES_HISTORY_S
    series: dict[tuple[str, str], _SecondSeries] = field(default_factory=dict)
    alarms: dict[tuple[str, int, str], _AlarmTrack] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._alarm_signals = {
            m.name: alarms
            for m in self.db.messages
            if m.family is not None and (alarms := _recorded_alarms(m))
        }
        self._series_signals = {
            m.name: [s for s in m.signals if s.role in SERIES_ROLES]
            for m in self.db.messages
            if any(s.role in SERIES_ROLES for s in m.signals)
        }
        # Messages with an alarm interval open on some node (their frames must be followed
        # even when no bit is set in a batch: the clearing ends the interval).
        self._open: dict[str, int] = {}

    def update(self, decoded: DecodedMessage) -> None:
        name = decoded.message.name
        if name in self._series_signals:
            self._note_series(decoded)
        if name in self._alarm_signals:
            self._note_alarms(decoded)

    # -- per-second series -----------------------------------------------------------------
    def _note_series(self, decoded: DecodedMessage) -> None:
        message = decoded.message
        cycle = message.cycle_time_ms / 1000.0 if message.cycle_time_ms else None
        nodes = decoded.node.astype(np.int64)
        for sig in self._series_signals[message.name]:
            ts = decoded.timestamp
            values = np.asarray(decoded.signals[sig.name], np.float64)
            who = nodes
            present = decoded.present.get(sig.name)
            if present is not None:
                ts, values, who = ts[present], values[present], who[present]
            if not len(ts):
                continue
            key = (message.name, sig.name)
            series = self.series.get(key)
            if series is None:
                series = self.series[key] = _SecondSeries(
                    sig.role or "",
                    message.name,
                    sig.name,
                    sig.unit,
                    stale_after(cycle),
                    self.history_s,
                )
            series.add(who, ts, values)

    def role_series(self) -> dict[str, tuple[RoleSeries, ...]]:
        """Every recorded series by role, in (message, signal, node) order."""
        out: dict[str, list[RoleSeries]] = {}
        for key in sorted(self.series):
            series = self.series[key]
            out.setdefault(series.role, []).extend(series.frozen())
        return {role: tuple(s) for role, s in out.items() if s}

    # -- alarm bits --------------------------------------------------------------------------
    def _note_alarms(self, decoded: DecodedMessage) -> None:
        message = decoded.message
        alarms = self._alarm_signals[message.name]
        if not self._open.get(message.name) and not any(
            np.asarray(decoded.signals[sig]).any() for sig, _ in alarms
        ):
            return  # all clear, as before: nothing to record (the usual case)
        bits = [np.asarray(decoded.signals[sig]) != 0 for sig, _ in alarms]
        for j, (sig, _) in enumerate(alarms):
            present = decoded.present.get(sig)
            if present is not None:
                bits[j] = bits[j] & present
        keep = _named_nodes(decoded)
        ts = decoded.timestamp[keep]
        addresses = (
            decoded.node[keep].astype(np.int64)
            if message.node_mask
            else np.zeros(len(ts), np.int64)
        )
        cycle = message.cycle_time_ms / 1000.0 if message.cycle_time_ms else None
        family = message.family or ""
        kept_bits = [b[keep] for b in bits]
        kept_present = [_kept(decoded.present.get(sig), keep) for sig, _ in alarms]
        still_open = 0
        for (address, rows), j in _node_rows(ts, addresses, range(len(alarms))):
            sig, alarm = alarms[j]
            column = kept_bits[j][rows]
            times = ts[rows]
            present = kept_present[j]
            seen = None if present is None else present[rows]
            key = (message.name, address, sig)
            track = self.alarms.get(key)
            if track is None:
                if not column.any():
                    continue
                track = self.alarms[key] = _AlarmTrack(
                    family, address, alarm, message.name, stale_after(cycle)
                )
            if len(times):
                track.feed(times, column, seen)
            still_open += track.open_since is not None
        self._open[message.name] = still_open

    def alarm_traces(self, now: float | None) -> tuple[AlarmTrace, ...]:
        """Every alarm bit ever set, per node, as of ``now`` (stale open intervals closed)."""
        return tuple(self.alarms[key].trace(now) for key in sorted(self.alarms))


def _recorded_alarms(message: MessageDef) -> list[tuple[str, str]]:
    """(signal, alarm) of the message's alarm bits in :data:`RECORDED_ALARMS`."""
    out = []
    for sig in message.signals:
        role = sig.role or ""
        if role.startswith("alarm:") and role.removeprefix("alarm:") in RECORDED_ALARMS:
            out.append((sig.name, role.removeprefix("alarm:")))
    return out


def _kept(present: Bools | None, keep: npt.NDArray[np.intp]) -> Bools | None:
    return None if present is None else np.asarray(present)[keep]


def _named_nodes(decoded: DecodedMessage) -> npt.NDArray[np.intp]:
    """The frames that name a node (a pack's broadcast to every module names none)."""
    broadcast = decoded.message.broadcast_node
    if broadcast < 0 or not decoded.message.node_mask:
        return np.arange(len(decoded.timestamp))
    return np.flatnonzero(decoded.node != broadcast)


def _node_rows(
    ts: F64, nodes: I64, items: Sequence[Any] | range
) -> Iterator[tuple[tuple[int, npt.NDArray[np.intp]], Any]]:
    """For each node of a batch (rows in time order) and each item: ((node, rows), item)."""
    if not len(ts):
        return
    if bool((nodes == nodes[0]).all()):
        order = np.arange(len(ts)) if _is_sorted(ts) else np.argsort(ts, kind="stable")
        groups = [(int(nodes[0]), order)]
    else:
        order = np.lexsort((ts, nodes))
        starts, stops = run_bounds(nodes[order])
        groups = [
            (int(nodes[order[a]]), order[a:b])
            for a, b in zip(starts.tolist(), stops.tolist(), strict=True)
        ]
    for group in groups:
        for item in items:
            yield group, item


def _is_sorted(ts: F64) -> bool:
    return bool(len(ts) < 2 or (ts[1:] >= ts[:-1]).all())
