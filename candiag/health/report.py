"""The bus report as typed values: what :class:`~candiag.health.pipeline.BusPipeline` knows.

One :class:`BusReport` per bus and instant, built by :meth:`BusPipeline.report
<candiag.health.pipeline.BusPipeline.report>` and read by the diagnosis rules, the live
view, the HTML report and ``analyze --json``.  Every part is a frozen dataclass, so a
renamed field is a type error, not a rule silently turned off.

What is not known is ``None`` in its field, never a missing attribute: ``tec_last`` of a
bus that sent no counters, ``cooling.flow`` of a charger without a flow meter, ``ids``'s
``cycle_ok`` of an id without a declared cycle.  Parts only a full report carries (the
lifetime id table, signal statistics, decode counters, the bus-state history, the load
figures) are ``None`` in the cheap report the diagnosis reads between full reports
(``detail=False``).

``to_json()`` gives ``candiag analyze --json``'s keys and values (documented in README.md,
guarded by tests/test_golden_reports.py).  Where that JSON leaves a key out when there is
nothing to say (``cooling`` and ``currents`` keys of unread signals, ``link`` of a bus with no
netlink view, ``bitrate_source`` of a live bus), so does ``to_json()``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from candiag.health.busstate import StateChange
from candiag.health.jsontypes import Json, JsonObject
from candiag.health.linkstats import LinkStats
from candiag.health.nodes import FirmwareMismatch, NodeView

__all__ = ["Json", "JsonObject"]  # and the report types below


def _counts(counts: Mapping[str, int]) -> JsonObject:
    return {k: int(v) for k, v in counts.items()}


@dataclass(frozen=True)
class FrameCounts:
    """Frames of the bus by kind (``total`` = data + remote + error)."""

    total: int
    data: int
    remote: int
    error: int

    def to_json(self) -> JsonObject:
        return {"total": self.total, "data": self.data, "remote": self.remote, "error": self.error}


@dataclass(frozen=True)
class ErrorCounters:
    """TEC/REC as the error frames carried them (``None``: no frame carried them)."""

    tec_max: int | None
    rec_max: int | None
    tec_last: int | None
    rec_last: int | None
    frames_flagged: int
    frames_unflagged_nonzero: int
    unflagged_tec_last: int | None
    unflagged_rec_last: int | None

    def to_json(self) -> JsonObject:
        return {
            "tec_max": self.tec_max,
            "rec_max": self.rec_max,
            "tec_last": self.tec_last,
            "rec_last": self.rec_last,
            "frames_flagged": self.frames_flagged,
            "frames_unflagged_nonzero": self.frames_unflagged_nonzero,
            "unflagged_tec_last": self.unflagged_tec_last,
            "unflagged_rec_last": self.unflagged_rec_last,
        }


@dataclass(frozen=True)
class ErrorFramesReport:
    """Error frames by class and sub-field, and the error counters.

    ``tec_last``/``rec_last``: the counters diagnosis judges (0 when none were read; live,
    the kernel's berr-counter when no error frame carried them, see ``counters_source``).
    The sub-field tables leave out zero entries.
    """

    error_frames: int
    by_class: Mapping[str, int]
    controller: Mapping[str, int]
    protocol_type: Mapping[str, int]
    protocol_location: Mapping[str, int]
    transceiver: Mapping[str, int]
    lost_arbitration_bits: Mapping[str, int]
    first_timestamp: float | None
    last_timestamp: float | None
    tec_max: int
    rec_max: int
    tec_last: int
    rec_last: int
    counters: ErrorCounters
    counters_source: str | None = None  # live only: "error_frames", "netlink" or "none"
    source: str = "error_frames"

    def to_json(self) -> JsonObject:
        out: JsonObject = {
            "source": self.source,
            "error_frames": self.error_frames,
            "by_class": _counts(self.by_class),
            "controller": _counts(self.controller),
            "protocol_type": _counts(self.protocol_type),
            "protocol_location": _counts(self.protocol_location),
            "transceiver": _counts(self.transceiver),
            "lost_arbitration_bits": _counts(self.lost_arbitration_bits),
            "first_timestamp": self.first_timestamp,
            "last_timestamp": self.last_timestamp,
            "tec_max": self.tec_max,
            "rec_max": self.rec_max,
            "tec_last": self.tec_last,
            "rec_last": self.rec_last,
            "counters": self.counters.to_json(),
        }
        if self.counters_source is not None:
            out["counters_source"] = self.counters_source
        return out


@dataclass(frozen=True)
class BusStateReport:
    """The controller state's history: since when, how often, time spent in each state."""

    sources: tuple[str, ...]
    state: str
    state_since: float | None
    bus_off_events: int
    restarts: int
    transitions: int
    tec: int | None
    rec: int | None
    seconds_in_state: Mapping[str, float]
    changes: tuple[StateChange, ...]

    def to_json(self) -> JsonObject:
        return {
            "sources": list(self.sources),
            "state": self.state,
            "state_since": self.state_since,
            "bus_off_events": self.bus_off_events,
            "restarts": self.restarts,
            "transitions": self.transitions,
            "tec": self.tec,
            "rec": self.rec,
            "seconds_in_state": dict(self.seconds_in_state),
            "changes": [_state_change(c) for c in self.changes],
        }


def _state_change(change: StateChange) -> JsonObject:
    return {
        "timestamp": change.timestamp,
        "from": change.old,
        "to": change.new,
        "source": change.source,
    }


@dataclass(frozen=True)
class LoadReport:
    """Bus load over the bus's life (``mean_ratio`` ``None``: no figure, see ``note``).

    ``bitrate_source``/``bitrate_detail``: how the bitrate was chosen (offline analysis).
    ``channels``: in a report over several buses, each bus's own load.
    """

    bitrate: int
    bitrate_known: bool
    data_bitrate: int | None
    mean_ratio: float | None
    max_ratio_1s: float
    span_s: float | None
    overfull_seconds: int
    note: str | None
    source: str = "frames"
    bitrate_source: str | None = None
    bitrate_detail: str | None = None
    channels: Mapping[str, LoadReport] | None = None

    def to_json(self) -> JsonObject:
        out: JsonObject = {
            "bitrate": self.bitrate,
            "bitrate_known": self.bitrate_known,
            "data_bitrate": self.data_bitrate,
            "mean_ratio": self.mean_ratio,
            "max_ratio_1s": self.max_ratio_1s,
            "span_s": self.span_s,
            "overfull_seconds": self.overfull_seconds,
            "note": self.note,
            "source": self.source,
        }
        if self.bitrate_source is not None:
            out["bitrate_source"] = self.bitrate_source
            out["bitrate_detail"] = self.bitrate_detail
        if self.channels is not None:
            out["channels"] = {name: load.to_json() for name, load in self.channels.items()}
        return out


@dataclass(frozen=True)
class WindowReport:
    """One sliding window (10 s, 60 s, 5 min, 1 h) of the bus."""

    frames: int
    frames_per_second: float
    error_frames: Mapping[str, int]  # by class
    error_frames_total: int
    protocol_type: Mapping[str, int]
    bus_off: int
    load_ratio: float
    load_ratio_max_10s: float  # the worst 10 s within the window

    def to_json(self) -> JsonObject:
        return {
            "frames": self.frames,
            "frames_per_second": self.frames_per_second,
            "error_frames": _counts(self.error_frames),
            "error_frames_total": self.error_frames_total,
            "protocol_type": _counts(self.protocol_type),
            "bus_off": self.bus_off,
            "load_ratio": self.load_ratio,
            "load_ratio_max_10s": self.load_ratio_max_10s,
        }


@dataclass(frozen=True)
class ErrorBursts:
    """Seconds of the last minute with a burst of protocol errors (a wrong-bitrate node)."""

    burst_seconds: int
    in_bursts: int
    protocol_total: int

    def to_json(self) -> JsonObject:
        return {
            "burst_seconds": self.burst_seconds,
            "in_bursts": self.in_bursts,
            "protocol_total": self.protocol_total,
        }


@dataclass(frozen=True)
class IdEntry:
    """One identifier: count, period, jitter, and whether it keeps its declared cycle.

    ``cycle_ok`` is ``None`` when there is no verdict (no declared cycle, too few
    periods).  In the cheap diagnosis report only ids breaking their cycle are listed,
    with the fields the rules read; the others (``channel``, ``first_seen``, the
    period spread, ``cycle_note``) are ``None`` there.
    """

    id: str
    extended: bool
    kind: str
    name: str | None
    family: str | None
    node: int | None
    channel: str | None
    count: int
    first_seen: float | None
    last_seen: float | None
    mean_period_s: float | None
    jitter_s: float | None
    min_period_s: float | None
    max_period_s: float | None
    p95_period_s: float | None
    cycle_ms: float | None
    cycle_ok: bool | None
    cycle_note: str | None

    def to_json(self) -> JsonObject:
        return {
            "id": self.id,
            "extended": self.extended,
            "kind": self.kind,
            "name": self.name,
            "family": self.family,
            "node": self.node,
            "channel": self.channel,
            "count": self.count,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "mean_period_s": self.mean_period_s,
            "jitter_s": self.jitter_s,
            "min_period_s": self.min_period_s,
            "max_period_s": self.max_period_s,
            "p95_period_s": self.p95_period_s,
            "cycle_ms": self.cycle_ms,
            "cycle_ok": self.cycle_ok,
            "cycle_note": self.cycle_note,
        }


@dataclass(frozen=True)
class SignalReport:
    """Statistics of one decoded signal (per node where the message is addressed)."""

    message: str
    signal: str
    node: int | None
    unit: str
    role: str | None
    count: int
    min: float | None
    max: float | None
    mean: float | None
    last: float | None
    last_ts: float | None
    # True when its message stopped coming (``last`` is history); None when that cannot be
    # told (no cycle time) or the report has no instant (docs/diagnosis.md, "No stale state").
    stale: bool | None = None

    def to_json(self) -> JsonObject:
        return {
            "message": self.message,
            "signal": self.signal,
            "node": self.node,
            "unit": self.unit,
            "role": self.role,
            "count": self.count,
            "min": self.min,
            "max": self.max,
            "mean": self.mean,
            "last": self.last,
            "last_ts": self.last_ts,
            "stale": self.stale,
        }


@dataclass(frozen=True)
class DecodeReport:
    """How much of the traffic the DBCs explained (top unknown ids, short frames)."""

    decoded_frames: int
    unknown_frames: int
    unknown_ids: Mapping[str, int]
    short_frames: Mapping[str, int]
    untracked_frames: int  # frames of ids beyond the caps: in the totals, not itemized

    def to_json(self) -> JsonObject:
        return {
            "decoded_frames": self.decoded_frames,
            "unknown_frames": self.unknown_frames,
            "unknown_ids": _counts(self.unknown_ids),
            "short_frames": _counts(self.short_frames),
            "untracked_frames": self.untracked_frames,
        }


@dataclass(frozen=True)
class ContactorReport:
    """Command vs feedback of one contactor (``mismatch_s``: how long they disagree)."""

    name: str
    command: float | None
    feedback: float | None
    weld: bool
    mismatch_s: float
    # When its frames last came (the older of command and feedback); ``stale``: they stopped
    # coming, so command and feedback are the last values seen, not the present state.
    last_seen: float | None = None
    stale: bool = False

    def to_json(self) -> JsonObject:
        return {
            "name": self.name,
            "command": self.command,
            "feedback": self.feedback,
            "weld": self.weld,
            "mismatch_s": self.mismatch_s,
            "last_seen": self.last_seen,
            "stale": self.stale,
        }


@dataclass(frozen=True)
class CoolingReport:
    """Fresh cooling values (``None``: not read, or stale). Pump command as a share."""

    pump_command: float | None = None
    flow: float | None = None
    coolant_temperature: float | None = None

    def to_json(self) -> JsonObject:
        values = {
            "pump_command": self.pump_command,
            "flow": self.flow,
            "coolant_temperature": self.coolant_temperature,
        }
        return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class CurrentsReport:
    """Fresh currents in A: the modules' output summed, and the DC meter's reading."""

    modules_output_a: float | None = None
    meter_a: float | None = None

    def to_json(self) -> JsonObject:
        values = {"modules_output_a": self.modules_output_a, "meter_a": self.meter_a}
        return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class BusReport:
    """Everything candiag knows about one bus at one instant.

    ``up``/``down_since``: live, whether candiag's interface is up (a capture is always
    up).  ``state``: the controller state, or ``"down"``.  ``windows``: by label
    (``"10s"``, ``"60s"``, ...); the cheap diagnosis report carries ``10s`` and ``60s``.
    ``dropped``/``dropped_recent``: frames lost before candiag saw them (live).
    """

    name: str
    bitrate: int
    bitrate_known: bool
    up: bool
    state: str
    frames: FrameCounts
    error_frames: ErrorFramesReport
    bus_off_events: int
    windows: Mapping[str, WindowReport]
    error_bursts: ErrorBursts
    ids: Mapping[str, IdEntry]
    nodes: tuple[NodeView, ...]
    firmware_mismatches: tuple[FirmwareMismatch, ...]
    dropped: Mapping[str, int]
    dropped_recent: int
    contactors: tuple[ContactorReport, ...]
    cooling: CoolingReport
    currents: CurrentsReport
    bus_state: BusStateReport | None = None
    bus_load: LoadReport | None = None
    decode: DecodeReport | None = None
    signals: Mapping[str, SignalReport] | None = None
    link: LinkStats | None = None
    down_since: float | None = None
    # Request/response exchanges of protocol packs (candiag/liveness), when any.
    # The controller's error counters are falling (CAN_TEC_RISING is raised only while rising).
    counters_falling: bool = False
    liveness: Mapping[str, Any] | None = None

    def window(self, label: str) -> WindowReport | None:
        """The window ``label`` (``"10s"``, ``"60s"``...), ``None`` when not in the report."""
        return self.windows.get(label)

    def to_json(self) -> JsonObject:
        """The JSON of one bus (``analyze --json``'s ``buses.<name>``; needs a full report)."""
        out: JsonObject = {
            "name": self.name,
            "bitrate": self.bitrate,
            "bitrate_known": self.bitrate_known,
            "up": self.up,
            "state": self.state,
            "bus_state": None if self.bus_state is None else self.bus_state.to_json(),
            "frames": self.frames.to_json(),
            "error_frames": self.error_frames.to_json(),
            "bus_off_events": self.bus_off_events,
            "bus_load": None if self.bus_load is None else self.bus_load.to_json(),
            "windows": {label: w.to_json() for label, w in self.windows.items()},
            "error_bursts": self.error_bursts.to_json(),
            "decode": None if self.decode is None else self.decode.to_json(),
            "ids": {key: entry.to_json() for key, entry in self.ids.items()},
            "nodes": [json_object(n.to_json()) for n in self.nodes],
            "firmware_mismatches": [json_object(m.to_json()) for m in self.firmware_mismatches],
            "signals": None
            if self.signals is None
            else {key: s.to_json() for key, s in self.signals.items()},
            "dropped": _counts(self.dropped),
            "dropped_recent": self.dropped_recent,
        }
        if self.link is not None:
            out["link"] = json_object(self.link.to_json())
        out["contactors"] = [c.to_json() for c in self.contactors]
        out["cooling"] = self.cooling.to_json()
        out["currents"] = self.currents.to_json()
        if self.down_since is not None:
            out["down_since"] = self.down_since
        if self.liveness is not None:
            out["liveness"] = json_object(self.liveness)
        return out


@dataclass(frozen=True)
class TimelineReport:
    """Per-second series of one bus for the offline report's plots.

    ``t``: the seconds (Unix time, whole); every series is aligned on it.  ``errors``: error
    frames per second by class; ``nodes``: frames per second of each node (``"power module
    3"``); ``signals``: per plot title, each node's per-second mean (NaN where none).
    """

    t: tuple[int, ...] = ()
    load_ratio: tuple[float, ...] = ()
    errors: Mapping[str, list[float]] | None = None
    nodes: Mapping[str, list[int]] | None = None
    signals: Mapping[str, Mapping[str, list[float]]] | None = None
    bus: str | None = None

    def columns(self) -> dict[str, object]:
        """The series by name (``t``, ``load_ratio``, ``errors``, ``nodes``, ``signals``,
        ``bus``), shared, not copied: what the HTML report plots."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def json_object(value: Mapping[str, object]) -> JsonObject:
    """A dict from outside the report types (a DBC warning, a DBC match) as checked JSON.

    Raises ``TypeError`` on anything JSON cannot hold, so no stray object reaches ``--json``.
    """
    return {str(k): _json(v) for k, v in value.items()}


def _json(value: object) -> Json:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Mapping):
        return json_object(value)
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    raise TypeError(f"not a JSON value: {value!r}")
