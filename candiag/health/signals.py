"""Decoded signal statistics and the plant facts diagnosis needs.

Per *(message, signal, node)*: count, min, max, mean, last value and its
timestamp, and the unit.  Updated per decode result with numpy reductions over
each (message, node) group, so the cost does not depend on per-frame Python.

From the signals' DBC roles (``CandiagRole``) it also derives the few plant
facts the diagnosis rules check: contactor command vs feedback (and for how
long they have disagreed), weld flags, coolant pump command, flow and
temperature, and the modules' summed output current against the DC meter's.  The
signal rules' interval evidence (alarm-bit intervals, per-second role series) is folded
in the same pass by :class:`~candiag.health.signalevidence.SignalEvidence` (``evidence``).

Why one file of ~670 lines: signal statistics and the facts read from signals
(contactors, cooling, currents) share one vectorized table per message.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from candiag.health.arrays import run_bounds
from candiag.health.jsontypes import JsonObject
from candiag.health.signalevidence import SERIES_HISTORY_S, SignalEvidence

F64 = npt.NDArray[np.float64]
# Roles whose latest fresh values the diagnosis reads (besides contactor:*).
FACT_ROLES = frozenset(
    {
        "output_current",
        "meter:current",
        "cooling:pump_command",
        "cooling:flow",
        "cooling:coolant_temperature",
    }
)

# Without a frame for this long, a contactor's values are the last seen, not the present.
STALE_AFTER_S = 3.0

if TYPE_CHECKING:
    from candiag.decode.dbc import ChargerDatabase, MessageDef, SignalDef
    from candiag.decode.decoder import DecodedMessage, DecodeResult


@dataclass
class SignalStat:
    message: str
    signal: str
    node: int  # -1 when the message is not addressed
    unit: str
    role: str | None
    cycle_s: float | None
    count: int = 0
    minimum: float = float("inf")
    maximum: float = float("-inf")
    total: float = 0.0
    last: float = float("nan")
    last_ts: float = float("nan")

    @property
    def key(self) -> str:
        return f"{self.message}.{self.signal}" + (f"[{self.node}]" if self.node >= 0 else "")

    def is_fresh(self, now: float, factor: float = 3.0) -> bool:
        """A value is fresh while younger than ``factor`` cycle times (1 s if no cycle)."""
        horizon = factor * (self.cycle_s or 1.0)
        return self.count > 0 and now - self.last_ts <= horizon

    def stale(self, now: float | None) -> bool | None:
        """True when its message stopped coming (``last`` is then history, not the present);
        None when that cannot be told (no cycle time: an event message may just be quiet)."""
        if now is None or self.cycle_s is None or not self.count:
            return None
        return not self.is_fresh(now)

    def to_json(self, now: float | None = None) -> JsonObject:
        out = self._json()
        if now is not None:
            out["stale"] = self.stale(now)
        return out

    def _json(self) -> JsonObject:
        return {
            "message": self.message,
            "signal": self.signal,
            "node": None if self.node < 0 else self.node,
            "unit": self.unit,
            "role": self.role,
            "count": self.count,
            "min": _num(self.minimum),
            "max": _num(self.maximum),
            "mean": _num(self.total / self.count) if self.count else None,
            "last": _num(self.last),
            "last_ts": _num(self.last_ts),
        }


def _num(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


# Intervals remembered per contactor (a live charger switches thousands of times a month).
MAX_INTERVALS = 1000
# Commanded/fed-back values that mean "closed" (the reference DBC: 0 Open, 1 Close(d)).
CLOSED = 1.0
OPEN = 0.0


@dataclass(frozen=True)
class Disagreement:
    """An interval where command and feedback disagree, exact to the frames.

    ``start``: time of the first disagreeing command/feedback pair; ``end``: the first
    agreeing one after it (None while it lasts).  ``command``/``feedback``: the values at
    its start; ``coil_max``: the highest coil current seen during it (None: not known).
    """

    start: float
    end: float | None
    command: float
    feedback: float
    coil_max: float | None = None


@dataclass
class _IntervalLog:
    """Turns a boolean step series fed batch by batch into intervals ``[rise, fall)``."""

    intervals: list[tuple[float, float | None]] = field(default_factory=list)
    open_since: float | None = None

    def feed(self, times: F64, on: npt.NDArray[np.bool_]) -> list[int]:
        """Fold in ``on`` at ``times`` (sorted); return the indices where an interval began."""
        if not len(times):
            return []
        prev = np.concatenate(([self.open_since is not None], on[:-1]))
        rises = np.flatnonzero(on & ~prev).tolist()
        falls = np.flatnonzero(~on & prev).tolist()
        for i in sorted(rises + falls):
            if on[i]:
                self.open_since = float(times[i])
            elif self.open_since is not None:
                self.intervals.append((self.open_since, float(times[i])))
                self.open_since = None
        if len(self.intervals) > MAX_INTERVALS:
            del self.intervals[: len(self.intervals) - MAX_INTERVALS]
        return rises

    def all(self) -> list[tuple[float, float | None]]:
        """Closed intervals, then the open one (end None) if any."""
        if self.open_since is None:
            return list(self.intervals)
        return [*self.intervals, (self.open_since, None)]


@dataclass
class ContactorFact:
    """Command vs feedback of one contactor, since when they disagree, and every interval
    they disagreed (exact to the frames) for the diagnosis's episodes."""

    name: str
    command: float | None = None
    feedback: float | None = None
    command_ts: float = float("-inf")
    feedback_ts: float = float("-inf")
    weld: bool = False
    disagree_since: float | None = None
    last_ts: float | None = None
    disagreements: list[Disagreement] = field(default_factory=list)
    weld_bits: _IntervalLog = field(default_factory=_IntervalLog)
    _open: Disagreement | None = None

    def all_disagreements(self) -> list[Disagreement]:
        """Closed disagreements, then the one still going (end None) if any."""
        return self.disagreements + ([self._open] if self._open is not None else [])

    def note_coil(self, series: tuple[F64, F64] | None) -> None:
        """The coil current seen while a disagreement lasts (a weld has none)."""
        if series is None or self._open is None:
            return
        during = series[1][series[0] >= self._open.start]
        if len(during):
            peak = float(during.max())
            old = self._open.coil_max
            self._open = replace(self._open, coil_max=peak if old is None else max(old, peak))

    def note_weld_bit(self, ts: F64, values: F64) -> None:
        order = np.argsort(ts, kind="stable")
        self.weld_bits.feed(ts[order], values[order] != 0)
        self.weld = bool(values[_latest(ts)])

    def _log(self, times: F64, cmd_at: F64, fb_at: F64, known: npt.NDArray[np.bool_]) -> None:
        """Record disagreement intervals; a time when one side is unknown changes nothing."""
        state = np.where(known, (cmd_at != fb_at).astype(np.int8), -1)
        last_known = np.maximum.accumulate(np.where(state >= 0, np.arange(len(state)), -1))
        before = 1 if self._open is not None else 0
        on = np.where(last_known >= 0, state[np.maximum(last_known, 0)], before).astype(np.bool_)
        prev = np.concatenate(([before == 1], on[:-1]))
        for i in np.flatnonzero(on != prev).tolist():
            if on[i]:
                self._open = Disagreement(float(times[i]), None, float(cmd_at[i]), float(fb_at[i]))
            elif self._open is not None:
                self.disagreements.append(replace(self._open, end=float(times[i])))
                self._open = None
        if len(self.disagreements) > MAX_INTERVALS:
            del self.disagreements[: len(self.disagreements) - MAX_INTERVALS]

    def advance(self, command: tuple[F64, F64] | None, feedback: tuple[F64, F64] | None) -> None:
        """Merge this batch's command and feedback series (step functions) in time order."""
        if command is None and feedback is None:
            return
        if _repeats(command, self.command) and _repeats(feedback, self.feedback):
            # Both sides only repeat what they said (the usual case): whether they
            # disagree, and since when, stays as it is; only the times move on.
            newest = [self.command_ts, self.feedback_ts]
            if command is not None:
                self.command_ts = float(command[0].max())
                newest.append(self.command_ts)
            if feedback is not None:
                self.feedback_ts = float(feedback[0].max())
                newest.append(self.feedback_ts)
            self.last_ts = max(newest)
            return
        cmd_ts, cmd = self._with_carry(command, self.command_ts, self.command)
        fb_ts, fb = self._with_carry(feedback, self.feedback_ts, self.feedback)
        times = np.unique(np.concatenate((cmd_ts, fb_ts)))
        times = times[np.isfinite(times)]
        cmd_at = _step_values(cmd_ts, cmd, times)
        fb_at = _step_values(fb_ts, fb, times)
        known = ~(np.isnan(cmd_at) | np.isnan(fb_at))
        disagree = known & (cmd_at != fb_at)
        self._log(times, cmd_at, fb_at, known)
        if disagree[-1]:
            # Only a time when both are known and equal ends a disagreement; a time when
            # one side is not known yet (e.g. the other's carried sample) says nothing.
            agreeing = np.flatnonzero(known & ~disagree)
            if len(agreeing):
                self.disagree_since = float(times[agreeing[-1] + 1])
            elif self.disagree_since is None:
                self.disagree_since = float(times[np.flatnonzero(disagree)[0]])
        else:
            self.disagree_since = None
        self.command, self.command_ts = _last(cmd_ts, cmd)
        self.feedback, self.feedback_ts = _last(fb_ts, fb)
        self.last_ts = float(times[-1])

    @staticmethod
    def _with_carry(
        series: tuple[F64, F64] | None, carry_ts: float, carry: float | None
    ) -> tuple[F64, F64]:
        ts = np.array([carry_ts], np.float64)
        vals = np.array([np.nan if carry is None else carry], np.float64)
        if series is not None:
            order = np.argsort(series[0], kind="stable")
            ts = np.concatenate((ts, series[0][order]))
            vals = np.concatenate((vals, series[1][order]))
        return ts, vals

    def to_json(self, now: float, stale_after_s: float = STALE_AFTER_S) -> JsonObject:
        """The contactor as of ``now``; ``stale`` when its frames stopped coming (the values
        are the last ones seen, at ``last_seen``, not the present state)."""
        mismatch = 0.0 if self.disagree_since is None else max(0.0, now - self.disagree_since)
        # The older side decides: a silent contactor board leaves the feedback behind even
        # while the controller's commands keep coming.
        seen = min(self.command_ts, self.feedback_ts)
        last_seen = None if not np.isfinite(seen) else seen
        return {
            "name": self.name,
            "command": self.command,
            "feedback": self.feedback,
            "weld": self.weld,
            "mismatch_s": round(mismatch, 3),
            "last_seen": last_seen,
            "stale": last_seen is None or now - last_seen > stale_after_s,
        }


def _repeats(series: tuple[F64, F64] | None, carried: float | None) -> bool:
    """True when ``series`` (if any) holds nothing but the known ``carried`` value."""
    return carried is not None and (series is None or bool((series[1] == carried).all()))


def _step_values(ts: F64, values: F64, at: F64) -> F64:
    """Value of the step function (ts, values) at each time in ``at`` (NaN before it starts)."""
    idx = np.searchsorted(ts, at, side="right") - 1
    out = values[np.clip(idx, 0, None)]
    return np.where(idx >= 0, out, np.nan)


def _last(ts: F64, values: F64) -> tuple[float | None, float]:
    value = float(values[-1])
    return (None if np.isnan(value) else value), float(ts[-1])


class _MessageTable:
    """Running statistics of every signal of one message, one row per node.

    Arrays are ``[nodes, signals]`` so one batch updates all signals and nodes of the
    message with a handful of ``reduceat`` calls.  Multiplexed signals absent from a
    frame are NaN there and ignored by the NaN-aware reductions.
    """

    def __init__(
        self,
        message: MessageDef,
        signals: Sequence[SignalDef] | None = None,
        *,
        extremes: bool = True,
    ) -> None:
        self.message = message
        # Without extremes only count and last value are kept (the diagnosis facts).
        self.extremes = extremes
        self.cycle_s = message.cycle_time_ms / 1000.0 if message.cycle_time_ms else None
        self.signals = tuple(message.signals if signals is None else signals)
        self.names = [s.name for s in self.signals]
        self.multiplexed = message.is_multiplexed
        k = len(self.signals)
        self.rows: dict[int, int] = {}
        self.count = np.zeros((0, k), np.int64)
        self.minimum = np.zeros((0, k), np.float64)
        self.maximum = np.zeros((0, k), np.float64)
        self.total = np.zeros((0, k), np.float64)
        self.last = np.zeros((0, k), np.float64)
        self.last_ts = np.zeros((0, k), np.float64)

    def _row_of(self, nodes: list[int]) -> npt.NDArray[np.intp]:
        new = [n for n in nodes if n not in self.rows]
        if new:
            k = len(self.signals)
            grow = len(new)
            for n in new:
                self.rows[n] = len(self.rows)
            self.count = np.vstack((self.count, np.zeros((grow, k), np.int64)))
            self.minimum = np.vstack((self.minimum, np.full((grow, k), np.inf)))
            self.maximum = np.vstack((self.maximum, np.full((grow, k), -np.inf)))
            self.total = np.vstack((self.total, np.zeros((grow, k))))
            self.last = np.vstack((self.last, np.full((grow, k), np.nan)))
            self.last_ts = np.vstack((self.last_ts, np.full((grow, k), -np.inf)))
        return np.array([self.rows[n] for n in nodes], np.intp)

    def update(self, decoded: DecodedMessage) -> None:
        """Fold one message's frames in (any order, any nodes, multiplexed or not)."""
        ts = decoded.timestamp
        time_order = None if _is_sorted(ts) else np.argsort(ts, kind="stable")
        if time_order is not None:
            ts = ts[time_order]
        # One float64 matrix of the message's signals (np.stack converts as it copies).
        values = np.stack([decoded.signals[name] for name in self.names], axis=1, dtype=np.float64)
        if time_order is not None:
            values = values[time_order]
        present = (
            np.stack([decoded.present[name] for name in self.names], axis=1)
            if self.multiplexed
            else None
        )
        if present is not None and time_order is not None:
            present = present[time_order]
        nodes = _take(decoded.node, time_order)
        # Group rows by node, keeping time order inside each group (a stable sort).
        by_node = None if (nodes == nodes[0]).all() else np.argsort(nodes, kind="stable")
        g_nodes = nodes if by_node is None else nodes[by_node]
        g_values = values if by_node is None else values[by_node]
        g_ts = ts if by_node is None else ts[by_node]
        starts, stops = run_bounds(g_nodes)
        rows = self._row_of(g_nodes[starts].tolist())
        if present is None:
            self._fold_dense(rows, starts, stops, g_values, g_ts)
        else:
            g_present = present if by_node is None else present[by_node]
            self._fold_multiplexed(rows, starts, g_values, g_ts, g_present)

    def update_last(self, decoded: DecodedMessage) -> None:
        """Count and last value only (no extremes): a message from one node, cheaply.

        The diagnosis facts are folded at every evaluation step; most fact messages
        come from one node and are not multiplexed, so this avoids the general update's
        value matrix and per-node grouping.  Anything else takes :meth:`update`.
        """
        nodes = decoded.node
        if self.extremes or self.multiplexed or not bool((nodes == nodes[0]).all()):
            self.update(decoded)
            return
        ts = decoded.timestamp
        latest = _latest(ts)
        row = self._row_of([int(nodes[0])])[0]
        self.count[row] += len(ts)
        newer = ts[latest] >= self.last_ts[row]
        values = np.array([float(decoded.signals[name][latest]) for name in self.names])
        self.last[row] = np.where(newer, values, self.last[row])
        self.last_ts[row] = np.where(newer, ts[latest], self.last_ts[row])

    def _fold_dense(
        self,
        rows: npt.NDArray[np.intp],
        starts: npt.NDArray[np.intp],
        stops: npt.NDArray[np.intp],
        values: F64,
        ts: F64,
    ) -> None:
        counts = (stops - starts)[:, None]
        last = stops - 1
        self.count[rows] += counts
        if self.extremes:
            self.minimum[rows] = np.minimum(
                self.minimum[rows], np.minimum.reduceat(values, starts, axis=0)
            )
            self.maximum[rows] = np.maximum(
                self.maximum[rows], np.maximum.reduceat(values, starts, axis=0)
            )
            self.total[rows] += np.add.reduceat(values, starts, axis=0)
        newer = ts[last][:, None] >= self.last_ts[rows]
        self.last[rows] = np.where(newer, values[last], self.last[rows])
        self.last_ts[rows] = np.where(newer, ts[last][:, None], self.last_ts[rows])

    def _fold_multiplexed(
        self,
        rows: npt.NDArray[np.intp],
        starts: npt.NDArray[np.intp],
        values: F64,
        ts: F64,
        present: npt.NDArray[np.bool_],
    ) -> None:
        self.count[rows] += np.add.reduceat(present, starts, axis=0)
        if self.extremes:
            masked = np.where(present, values, np.nan)
            self.minimum[rows] = np.fmin(
                self.minimum[rows], np.fmin.reduceat(masked, starts, axis=0)
            )
            self.maximum[rows] = np.fmax(
                self.maximum[rows], np.fmax.reduceat(masked, starts, axis=0)
            )
            self.total[rows] += np.add.reduceat(np.where(present, values, 0.0), starts, axis=0)
        # The last present row of each (node, signal): rows are time-ordered within a node.
        index = np.where(present, np.arange(len(values))[:, None], -1)
        last_row = np.maximum.reduceat(index, starts, axis=0)
        picked = np.take_along_axis(values, np.maximum(last_row, 0), axis=0)
        picked_ts = ts[np.maximum(last_row, 0)]
        newer = (last_row >= 0) & (picked_ts >= self.last_ts[rows])
        self.last[rows] = np.where(newer, picked, self.last[rows])
        self.last_ts[rows] = np.where(newer, picked_ts, self.last_ts[rows])

    def stats(self) -> Iterator[SignalStat]:
        for node, row in self.rows.items():
            for j, sig in enumerate(self.signals):
                if self.count[row, j] == 0:
                    continue
                yield SignalStat(
                    message=self.message.name,
                    signal=sig.name,
                    node=node,
                    unit=sig.unit,
                    role=sig.role,
                    cycle_s=self.cycle_s,
                    count=int(self.count[row, j]),
                    minimum=float(self.minimum[row, j]),
                    maximum=float(self.maximum[row, j]),
                    total=float(self.total[row, j]),
                    last=float(self.last[row, j]),
                    last_ts=float(self.last_ts[row, j]),
                )


@dataclass
class SignalStats:
    """All signal statistics of one bus, plus role-derived plant facts."""

    db: ChargerDatabase
    tables: dict[str, _MessageTable] = field(default_factory=dict)
    fact_tables: dict[str, _MessageTable] = field(default_factory=dict)
    contactors: dict[str, ContactorFact] = field(default_factory=dict)
    # The signal rules' evidence: None keeps it for the whole capture (offline).
    history_s: float | None = SERIES_HISTORY_S

    def __post_init__(self) -> None:
        self.evidence = SignalEvidence(self.db, self.history_s)
        self._fact_messages = {
            m.name: [s for s in m.signals if _is_fact_role(s.role)]
            for m in self.db.messages
            if any(_is_fact_role(s.role) for s in m.signals)
        }
        self._pairs = _contactor_pairs(self.db)
        self._contactor_signals: dict[str, list[tuple[str, str, str]]] = {}
        for m in self.db.messages:
            for sig in m.signals:
                role = sig.role or ""
                if sig.name in self._pairs and role.startswith("contactor:"):
                    self._contactor_signals.setdefault(m.name, []).append(
                        (sig.name, self._pairs[sig.name], role.removeprefix("contactor:"))
                    )
        for name in self._pairs.values():
            self.contactors.setdefault(name, ContactorFact(name))

    def update(self, result: DecodeResult, *, stats: bool = True, facts: bool = True) -> None:
        """Fold a decode result in.

        ``stats``: the per-signal statistics (min, max, mean, last) of every signal;
        ``facts``: what diagnosis reads as of now (contactor command/feedback, and the
        fresh values of the roles in ``FACT_ROLES``).  The offline analysis folds the
        statistics once per capture chunk and the facts per evaluation step; live, both.
        """
        series: dict[tuple[str, str], tuple[F64, F64]] = {}
        for decoded in result.messages.values():
            message = decoded.message
            if not len(decoded.index) or not message.signals:
                continue
            if stats:
                self._table(self.tables, message, None).update(decoded)
            if facts and message.name in self._fact_messages:
                table = self._table(
                    self.fact_tables, message, self._fact_messages[message.name], extremes=False
                )
                table.update_last(decoded)
                self._note_contactors(decoded, series)
            if facts:
                self.evidence.update(decoded)
        if facts:
            for name, fact in self.contactors.items():
                fact.advance(series.get((name, "command")), series.get((name, "feedback")))
                fact.note_coil(series.get((name, "coil_current")))

    @staticmethod
    def _table(
        tables: dict[str, _MessageTable],
        message: MessageDef,
        signals: Sequence[SignalDef] | None,
        *,
        extremes: bool = True,
    ) -> _MessageTable:
        table = tables.get(message.name)
        if table is None:
            table = tables[message.name] = _MessageTable(message, signals, extremes=extremes)
        return table

    def _note_contactors(
        self, decoded: DecodedMessage, series: dict[tuple[str, str], tuple[F64, F64]]
    ) -> None:
        for sig, name, role in self._contactor_signals.get(decoded.message.name, ()):
            ts, values = decoded.timestamp, decoded.signals[sig]
            present = decoded.present.get(sig)
            if present is not None:
                if not present.any():
                    continue
                ts, values = ts[present], values[present]
            if role == "weld":
                self.contactors[name].note_weld_bit(ts, values.astype(np.float64))
            else:
                series[(name, role)] = (ts, values.astype(np.float64))

    @property
    def stats(self) -> dict[tuple[str, str, int], SignalStat]:
        """Every signal's statistics, keyed (message, signal, node); built on demand."""
        out = {}
        for table in self.tables.values():
            for stat in table.stats():
                out[(stat.message, stat.signal, stat.node)] = stat
        return out

    # -- views -----------------------------------------------------------------------------
    def fresh(self, now: float) -> Iterator[SignalStat]:
        return (s for s in self.stats.values() if s.is_fresh(now))

    def fresh_with_role(self, role: str, now: float) -> list[SignalStat]:
        """Fresh statistics of the signals carrying ``role`` (cheap: only those signals)."""
        out = []
        for table in self.fact_tables.values():
            for j, sig in enumerate(table.signals):
                if sig.role != role:
                    continue
                for node, row in table.rows.items():
                    horizon = 3.0 * (table.cycle_s or 1.0)
                    if table.count[row, j] and now - table.last_ts[row, j] <= horizon:
                        out.append(
                            SignalStat(
                                table.message.name,
                                sig.name,
                                node,
                                sig.unit,
                                sig.role,
                                table.cycle_s,
                                count=int(table.count[row, j]),
                                last=float(table.last[row, j]),
                                last_ts=float(table.last_ts[row, j]),
                            )
                        )
        return out

    def to_json(self, now: float | None = None) -> JsonObject:
        """Every signal's statistics; with ``now``, each says whether its value is stale."""
        return {s.key: s.to_json(now) for _, s in sorted(self.stats.items())}

    def latest_by_role(self, role: str, now: float) -> list[SignalStat]:
        return self.fresh_with_role(role, now)

    def facts(self, now: float) -> dict[str, Any]:
        """Contactor, cooling and current facts for the diagnosis rules."""
        return {
            "contactors": [c.to_json(now) for c in self.contactors.values() if c.last_ts],
            "cooling": self._cooling(now),
            "currents": self._currents(now),
        }

    def _cooling(self, now: float) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for role, key in (
            ("cooling:pump_command", "pump_command"),
            ("cooling:flow", "flow"),
            ("cooling:coolant_temperature", "coolant_temperature"),
        ):
            values = self.latest_by_role(role, now)
            if not values:
                continue
            stat = values[0]
            value = stat.last
            if key == "pump_command" and stat.unit.strip() == "%":
                value /= 100.0  # the rule compares a share of full speed
            if key == "coolant_temperature":
                value = max(s.last for s in values)
            out[key] = round(value, 4)
        return out

    def _currents(self, now: float) -> dict[str, Any]:
        modules = self.latest_by_role("output_current", now)
        meter = self.latest_by_role("meter:current", now)
        out: dict[str, Any] = {}
        if modules:
            out["modules_output_a"] = round(sum(s.last for s in modules), 3)
        if meter:
            scale = 0.001 if meter[0].unit.strip() == "mA" else 1.0
            out["meter_a"] = round(meter[0].last * scale, 3)
        return out


def _is_fact_role(role: str | None) -> bool:
    return role is not None and (role in FACT_ROLES or role.startswith("contactor:"))


def _latest(ts: F64) -> int:
    """Index of the newest timestamp (the last of equal ones, as a stable sort puts it)."""
    return len(ts) - 1 - int(np.argmax(ts[::-1]))


def _is_sorted(ts: F64) -> bool:
    return bool(len(ts) < 2 or (ts[1:] >= ts[:-1]).all())


def _take(values: npt.NDArray[Any], order: npt.NDArray[np.intp] | None) -> npt.NDArray[Any]:
    return values if order is None else values[order]


def _contactor_pairs(db: ChargerDatabase) -> dict[str, str]:
    """Signal name -> contactor name, pairing command/feedback/weld roles by order.

    The i-th ``contactor:command`` signal of the database pairs with the i-th
    ``contactor:feedback`` and ``contactor:weld`` signals (in message, then
    start-bit order).  The contactor's name is the command signal's name
    without a trailing ``Command``.
    """
    by_role: dict[str, list[str]] = {}
    for message in db.messages:
        for sig in sorted(message.signals, key=lambda s: s.start):
            if sig.role and sig.role.startswith("contactor:"):
                by_role.setdefault(sig.role, []).append(sig.name)
    commands = by_role.get("contactor:command", [])
    out: dict[str, str] = {}
    for i, command in enumerate(commands):
        name = command.removesuffix("Command").removesuffix("_command") or command
        out[command] = name
        for role in ("contactor:feedback", "contactor:weld", "contactor:coil_current"):
            names = by_role.get(role, [])
            if i < len(names):
                out[names[i]] = name
    return out
