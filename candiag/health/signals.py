"""Decoded signal statistics and the plant facts diagnosis needs.

Per *(message, signal, node)*: count, min, max, mean, last value and its
timestamp, and the unit.  Updated per decode result with numpy reductions over
each (message, node) group, so the cost does not depend on per-frame Python.

From the signals' DBC roles (``CandiagRole``) it also derives the few plant
facts the diagnosis rules check: contactor command vs feedback (and for how
long they have disagreed), weld flags, coolant pump command, flow and
temperature, and the modules' summed output current against the DC meter's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

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

    def to_json(self) -> dict[str, Any]:
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


@dataclass
class ContactorFact:
    """Command vs feedback of one contactor, and since when they disagree."""

    name: str
    command: float | None = None
    feedback: float | None = None
    command_ts: float = float("-inf")
    feedback_ts: float = float("-inf")
    weld: bool = False
    disagree_since: float | None = None
    last_ts: float | None = None

    def advance(self, command: tuple[F64, F64] | None, feedback: tuple[F64, F64] | None) -> None:
        """Merge this batch's command and feedback series (step functions) in time order."""
        if command is None and feedback is None:
            return
        cmd_ts, cmd = self._with_carry(command, self.command_ts, self.command)
        fb_ts, fb = self._with_carry(feedback, self.feedback_ts, self.feedback)
        times = np.unique(np.concatenate((cmd_ts, fb_ts)))
        times = times[np.isfinite(times)]
        cmd_at = _step_values(cmd_ts, cmd, times)
        fb_at = _step_values(fb_ts, fb, times)
        known = ~(np.isnan(cmd_at) | np.isnan(fb_at))
        disagree = known & (cmd_at != fb_at)
        if disagree[-1]:
            agreeing = np.flatnonzero(~disagree)
            start = float(times[agreeing[-1] + 1]) if len(agreeing) else float(times[0])
            if self.disagree_since is None or len(agreeing):
                self.disagree_since = start
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

    def to_json(self, now: float) -> dict[str, Any]:
        mismatch = 0.0 if self.disagree_since is None else max(0.0, now - self.disagree_since)
        return {
            "name": self.name,
            "command": self.command,
            "feedback": self.feedback,
            "weld": self.weld,
            "mismatch_s": round(mismatch, 3),
        }


def _step_values(ts: F64, values: F64, at: F64) -> F64:
    """Value of the step function (ts, values) at each time in ``at`` (NaN before it starts)."""
    idx = np.searchsorted(ts, at, side="right") - 1
    out = values[np.clip(idx, 0, None)]
    return np.where(idx >= 0, out, np.nan)


def _last(ts: F64, values: F64) -> tuple[float | None, float]:
    value = float(values[-1])
    return (None if np.isnan(value) else value), float(ts[-1])


@dataclass
class SignalStats:
    """All signal statistics of one bus, plus role-derived plant facts."""

    db: ChargerDatabase
    stats: dict[tuple[str, str, int], SignalStat] = field(default_factory=dict)
    contactors: dict[str, ContactorFact] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._pairs = _contactor_pairs(self.db)
        for name in self._pairs.values():
            self.contactors.setdefault(name, ContactorFact(name))

    def update(self, result: DecodeResult) -> None:
        series: dict[tuple[str, str], tuple[F64, F64]] = {}
        for decoded in result.messages.values():
            if len(decoded.index):
                self._update_message(decoded, series)
        for name, fact in self.contactors.items():
            fact.advance(series.get((name, "command")), series.get((name, "feedback")))

    def _update_message(
        self, decoded: DecodedMessage, series: dict[tuple[str, str], tuple[F64, F64]]
    ) -> None:
        message = decoded.message
        cycle = message.cycle_time_ms / 1000.0 if message.cycle_time_ms else None
        for address, rows in _groups_by_node(decoded.node):
            ts = decoded.timestamp[rows]
            for sig in message.signals:
                values = decoded.signals[sig.name][rows].astype(np.float64, copy=False)
                present = decoded.present.get(sig.name)
                sig_ts = ts
                if present is not None and not present.all():
                    mask = present[rows]
                    values, sig_ts = values[mask], ts[mask]
                if len(values) == 0:
                    continue
                self._accumulate(message, sig, address, cycle, values, sig_ts)
                self._note_contactor(sig, values, sig_ts, series)

    def _accumulate(
        self,
        message: MessageDef,
        sig: SignalDef,
        address: int,
        cycle: float | None,
        values: npt.NDArray[np.float64],
        ts: npt.NDArray[np.float64],
    ) -> None:
        key = (message.name, sig.name, address)
        stat = self.stats.get(key)
        if stat is None:
            stat = self.stats[key] = SignalStat(
                message.name, sig.name, address, sig.unit, sig.role, cycle
            )
        stat.count += len(values)
        stat.minimum = min(stat.minimum, float(values.min()))
        stat.maximum = max(stat.maximum, float(values.max()))
        stat.total += float(values.sum())
        last = int(np.argmax(ts))
        if not ts[last] < stat.last_ts:  # also true while last_ts is NaN
            stat.last = float(values[last])
            stat.last_ts = float(ts[last])

    def _note_contactor(
        self,
        sig: SignalDef,
        values: F64,
        ts: F64,
        series: dict[tuple[str, str], tuple[F64, F64]],
    ) -> None:
        role = sig.role or ""
        name = self._pairs.get(sig.name)
        if name is None or not role.startswith("contactor:"):
            return
        if role == "contactor:weld":
            self.contactors[name].weld = bool(values[np.argmax(ts)])
        else:
            series[(name, role.removeprefix("contactor:"))] = (ts, values)

    # -- views -----------------------------------------------------------------------------
    def fresh(self, now: float) -> Iterator[SignalStat]:
        return (s for s in self.stats.values() if s.is_fresh(now))

    def to_json(self) -> dict[str, Any]:
        return {s.key: s.to_json() for _, s in sorted(self.stats.items())}

    def latest_by_role(self, role: str, now: float | None = None) -> list[SignalStat]:
        return [
            s
            for s in self.stats.values()
            if s.role == role and s.count and (now is None or s.is_fresh(now))
        ]

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


def _groups_by_node(
    nodes: npt.NDArray[np.int32],
) -> Iterator[tuple[int, npt.NDArray[np.intp]]]:
    if len(nodes) == 0:
        return
    if nodes[0] == nodes[-1] and (nodes == nodes[0]).all():
        yield int(nodes[0]), np.arange(len(nodes))
        return
    order = np.argsort(nodes, kind="stable")
    sorted_nodes = nodes[order]
    bounds = np.flatnonzero(np.diff(sorted_nodes)) + 1
    for chunk in np.split(order, bounds):
        yield int(nodes[chunk[0]]), chunk


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
        for role in ("contactor:feedback", "contactor:weld"):
            names = by_role.get(role, [])
            if i < len(names):
                out[names[i]] = name
    return out
