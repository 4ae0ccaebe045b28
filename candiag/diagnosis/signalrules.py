"""Signal rules as interval rules: node alarm bits, cooling and the DC meter's sign.

Each function reads a bus's timeline (:class:`~candiag.diagnosis.timeline.BusTimeline`)
and gives one finding per (code, subject) with every episode (docs/diagnosis.md,
"Signal rules"):

* ``CAN_NODE_ALARM_COMM``, ``CAN_NODE_ALARM_TEMP``, ``CAN_NODE_ALARM_FAN``: the node's
  own ``alarm:communication_interrupt``, ``alarm:over_temperature`` or ``alarm:fan`` bit,
  exact to the frames: from the first frame with the bit set to the first with it clear
  (any of the node's messages carrying that alarm).  A node whose message stops coming
  is not in alarm any more than it is healthy: the episode ends at the last frame that
  had the bit set (``CAN_NODE_OFFLINE`` tells the silence).
* ``COOLING_NO_FLOW`` (pump commanded at or above ``pump_min_command`` with flow below
  ``min_flow_l_min``), ``COOLING_OVERTEMP`` (coolant at or above ``coolant_warning_c``)
  and ``METER_REVERSED`` on a CAN bus (the modules' summed output current at least
  ``meter_reversed_min_a`` while the DC meter on the same bus reads at most minus that):
  the instant rules' conditions, judged at the end of *every* second on the values fresh
  then (a value is fresh for :data:`~candiag.health.signalevidence.STALE_CYCLES` cycle times of
  its message, as the instant rules read it).  Episodes are bounded by the newest frame
  among the values that first showed the fault (or first showed it gone), within a
  second of the frame where it began (or ended).
  The Modbus meter's ``METER_REVERSED`` stays an instant rule (its subject is not a bus).

Hysteresis: none beyond the evidence's own resolution.  An episode is raised at the
first frame (alarm bits) or second (the others) the condition holds, and ends at the first
one that disproves it; a stretch without fresh values ends it at the last fresh evidence.
Episodes are not merged: a fault that comes back is the finding's next occurrence.

Work is a few array passes per source signal (``np.searchsorted`` onto a common seconds
axis) and a loop per node alarm and per episode, never per second or per frame.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from candiag.diagnosis.engine import RuleBook
from candiag.diagnosis.episodes import Episode, settle
from candiag.diagnosis.intervalrule import IntervalFinding, IntervalRule
from candiag.diagnosis.timeline import BusTimeline
from candiag.health.signalevidence import AlarmTrace, RoleSeries

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
# A source's factor to the rule's unit (a share of full speed, amperes).
Scale = Callable[[RoleSeries], float]

#: Alarm role (without ``alarm:``) -> the code it raises.
ALARM_CODES = {
    "communication_interrupt": "CAN_NODE_ALARM_COMM",
    "over_temperature": "CAN_NODE_ALARM_TEMP",
    "fan": "CAN_NODE_ALARM_FAN",
}
COOLING_CODES = frozenset({"COOLING_NO_FLOW", "COOLING_OVERTEMP"})
# A source's value is looked up this many seconds after its frames at most (its freshness
# rarely lasts longer; a slower message is judged only on the seconds it lasts into).
MAX_REACH_S = 10


def _base(timeline: BusTimeline) -> dict[str, Any]:
    return {"bus": timeline.bus}


# -- node alarm bits ----------------------------------------------------------------------


def node_alarms(book: RuleBook, timeline: BusTimeline) -> list[IntervalFinding]:
    """A node's own alarm bit, one finding per node and alarm, episodes exact to frames."""
    by_node: dict[tuple[str, int, str], list[AlarmTrace]] = {}
    for trace in timeline.alarms:
        if trace.alarm in ALARM_CODES:
            by_node.setdefault((trace.family, trace.address, trace.alarm), []).append(trace)
    out = []
    for (family, address, alarm), traces in sorted(by_node.items()):
        episodes = tuple(settle(Episode(a, b) for trace in traces for a, b in trace.intervals))
        if not episodes:
            continue
        fields = {**_base(timeline), "family": family.replace("_", " "), "address": address}
        seen = [t.last_seen for t in traces if t.last_seen is not None]
        evidence = {
            "alarm": alarm,
            "messages": sorted({t.message for t in traces}),
            "occurrences": len(episodes),
            "last_seen": max(seen) if seen else None,
        }
        subject = f"{timeline.bus}/{family}/{address}"
        out.append(IntervalFinding(ALARM_CODES[alarm], subject, episodes, fields, evidence))
    return out


# -- per-second evidence --------------------------------------------------------------------


def seconds_axis(sources: Iterable[RoleSeries], end: float | None) -> I64:
    """Every second a source had a frame, and the seconds its value stays fresh after."""
    by_reach: dict[int, list[I64]] = {}
    for source in sources:
        reach = min(MAX_REACH_S, int(np.ceil(source.stale_after_s)))
        by_reach.setdefault(reach, []).append(source.seconds)
    if not by_reach:
        return np.zeros(0, np.int64)
    parts: list[I64] = []
    for reach, seconds in by_reach.items():
        seen = np.unique(np.concatenate(seconds))  # modules share their seconds
        parts.extend(seen + k for k in range(reach + 1))
    axis: I64 = np.unique(np.concatenate(parts))
    if end is not None:
        axis = axis[axis <= np.floor(end)]
    return axis


@dataclass(frozen=True)
class Judged:
    """One quantity at the end of every second of an axis: its value (NaN: nothing fresh)
    and the time of the frame that value comes from."""

    values: F64
    times: F64

    @property
    def known(self) -> Bools:
        known: Bools = ~np.isnan(self.values)
        return known


def fresh_values(source: RoleSeries, axis: I64, end: float | None, scale: float = 1.0) -> Judged:
    """The source's value at the end of each second of ``axis`` (NaN: none fresh then)."""
    idx = np.searchsorted(source.seconds, axis, side="right") - 1
    j = np.maximum(idx, 0)
    instant = axis + 1.0
    if end is not None:
        instant = np.minimum(instant, end)
    fresh = (idx >= 0) & (instant - source.times[j] <= source.stale_after_s)
    return Judged(
        np.where(fresh, source.values[j] * scale, np.nan), np.where(fresh, source.times[j], np.nan)
    )


def first_fresh(
    sources: Sequence[RoleSeries], axis: I64, end: float | None, scale: Scale
) -> Judged:
    """Per second, the first source (in the timeline's order) with a fresh value."""
    values = np.full(axis.size, np.nan)
    times = np.full(axis.size, np.nan)
    for source in sources:
        found = fresh_values(source, axis, end, scale(source))
        take = np.isnan(values) & found.known
        values = np.where(take, found.values, values)
        times = np.where(take, found.times, times)
    return Judged(values, times)


def hottest(sources: Sequence[RoleSeries], axis: I64, end: float | None) -> Judged:
    """Per second, the highest fresh value of the sources, and its frame's time."""
    if not sources:
        return Judged(np.full(axis.size, np.nan), np.full(axis.size, np.nan))
    found = [fresh_values(s, axis, end) for s in sources]
    values = np.vstack([f.values for f in found])
    times = np.vstack([f.times for f in found])
    pick = np.argmax(np.where(np.isnan(values), -np.inf, values), axis=0)
    cols = np.arange(axis.size)
    return Judged(values[pick, cols], times[pick, cols])


def summed(sources: Sequence[RoleSeries], axis: I64, end: float | None) -> Judged:
    """Per second, the sum of the fresh values (NaN when none is fresh), and the newest
    frame's time among them."""
    found = [fresh_values(s, axis, end) for s in sources]
    values = np.vstack([f.values for f in found])
    known = ~np.isnan(values).all(axis=0)
    total = np.where(known, np.nansum(values, axis=0), np.nan)
    times = np.vstack([f.times for f in found])
    newest = np.where(known, np.fmax.reduce(times, axis=0), np.nan)
    return Judged(total, newest)


def episodes_of(
    axis: I64, holds: Bools, parts: Sequence[Judged], end: float | None
) -> tuple[Episode, ...]:
    """The episodes of the seconds where ``holds``, bounded by frames.

    An episode starts at the newest frame among the values that first showed the fault
    (the fault began after the previous second's end, at or before that frame) and ends
    at the newest frame among those that first showed it gone.  When the values went stale
    instead, it ends at the last frame that showed it; still holding at the end of the
    data, it stays open.
    """
    if not axis.size or not holds.any():
        return ()
    known = np.logical_and.reduce([p.known for p in parts])
    proof = np.fmax.reduce([p.times for p in parts])
    on = np.flatnonzero(holds)
    breaks = np.flatnonzero(np.diff(axis[on]) != 1) + 1
    firsts = on[np.concatenate(([0], breaks))].tolist()
    lasts = on[np.concatenate((breaks - 1, [on.size - 1]))].tolist()
    out = []
    for i, j in zip(firsts, lasts, strict=True):
        k = j + 1
        stop: float | None
        if k < axis.size and axis[k] == axis[j] + 1 and known[k]:
            stop = float(proof[k])  # seen gone
        elif end is not None and j == axis.size - 1 and axis[j] >= np.floor(end):
            stop = None  # still there at the end of the data
        else:
            stop = float(proof[j])  # the evidence went stale: its last frame
        out.append(Episode(float(proof[i]), stop))
    return tuple(settle(out))


def _share(source: RoleSeries) -> float:
    return 0.01 if source.unit.strip() == "%" else 1.0  # the rule compares a share of full


def _amperes(source: RoleSeries) -> float:
    return 0.001 if source.unit.strip() == "mA" else 1.0


def _one(source: RoleSeries) -> float:
    return 1.0


def _worst(values: F64, inside: Bools, pick: Any) -> int | None:
    """Index of the worst second inside the episodes (``pick``: np.argmax or np.argmin);
    of equally bad seconds the latest (the state the fault was last seen in)."""
    candidates = np.flatnonzero(inside & ~np.isnan(values))[::-1]
    if not candidates.size:
        return None
    return int(candidates[int(pick(values[candidates]))])


def _round(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 4)


# -- cooling --------------------------------------------------------------------------------


def cooling(book: RuleBook, timeline: BusTimeline) -> list[IntervalFinding]:
    """No flow while the pump is commanded, and coolant over its warning temperature."""
    pumps = timeline.series.get("cooling:pump_command", ())
    flows = timeline.series.get("cooling:flow", ())
    temps = timeline.series.get("cooling:coolant_temperature", ())
    end = timeline.end
    axis = seconds_axis((*pumps, *flows, *temps), end)
    if not axis.size:
        return []
    pump = first_fresh(pumps, axis, end, _share)
    flow = first_fresh(flows, axis, end, _one)
    temp = hottest(temps, axis, end)
    subject = f"{timeline.bus}/cooling"
    out = []
    with np.errstate(invalid="ignore"):
        no_flow = (pump.values >= book.t("pump_min_command")) & (
            flow.values < book.t("min_flow_l_min")
        )
        hot = temp.values >= book.t("coolant_warning_c")
    episodes = episodes_of(axis, no_flow, (pump, flow), end)
    if episodes:
        worst = _worst(flow.values, no_flow, np.argmin)
        evidence = _cooling_values(pump.values, flow.values, temp.values, worst)
        out.append(IntervalFinding("COOLING_NO_FLOW", subject, episodes, _base(timeline), evidence))
    episodes = episodes_of(axis, hot, (temp,), end)
    if episodes:
        worst = _worst(temp.values, hot, np.argmax)
        evidence = _cooling_values(pump.values, flow.values, temp.values, worst)
        hottest_c = evidence.get("coolant_temperature")
        fields = {**_base(timeline)}
        if hottest_c is not None:
            fields["temperature"] = f"{float(hottest_c):.1f} degC"
        out.append(IntervalFinding("COOLING_OVERTEMP", subject, episodes, fields, evidence))
    return out


def _cooling_values(pump: F64, flow: F64, temp: F64, at: int | None) -> dict[str, Any]:
    """The cooling values of the worst second (as the instant rule's evidence names them)."""
    if at is None:
        return {}
    values = {
        "pump_command": _round(pump[at]),
        "flow": _round(flow[at]),
        "coolant_temperature": _round(temp[at]),
    }
    return {k: v for k, v in values.items() if v is not None}


# -- the DC meter's sign ----------------------------------------------------------------------


def meter_reversed(book: RuleBook, timeline: BusTimeline) -> list[IntervalFinding]:
    """The DC meter on this bus reads against the modules' summed output current."""
    modules = timeline.series.get("output_current", ())
    meters = timeline.series.get("meter:current", ())
    if not modules or not meters:
        return []
    end = timeline.end
    axis = seconds_axis((*modules, *meters), end)
    if not axis.size:
        return []
    total = summed(modules, axis, end)
    meter = first_fresh(meters, axis, end, _amperes)
    threshold = book.t("meter_reversed_min_a")
    with np.errstate(invalid="ignore"):
        reversed_ = (total.values >= threshold) & (meter.values <= -threshold)
    episodes = episodes_of(axis, reversed_, (total, meter), end)
    if not episodes:
        return []
    worst = _worst(meter.values, reversed_, np.argmin)
    evidence: dict[str, Any] = {}
    if worst is not None:
        evidence = {
            "modules_output_a": round(float(total.values[worst]), 2),
            "meter_current_a": round(float(meter.values[worst]), 2),
            "at": float(meter.times[worst]),
        }
    subject = f"{timeline.bus}/dc_meter"
    return [IntervalFinding("METER_REVERSED", subject, episodes, _base(timeline), evidence)]


RULES: tuple[IntervalRule, ...] = (
    IntervalRule(frozenset(ALARM_CODES.values()), node_alarms),
    IntervalRule(COOLING_CODES, cooling),
    IntervalRule(frozenset({"METER_REVERSED"}), meter_reversed),
)
