"""A bus's fact timeline: the evidence interval rules read, exact to the frames.

Instants ("what is wrong now?") miss a fault that comes and goes between two looks, and
place the ones they see on the evaluation grid.  The timeline keeps what the health
trackers recorded as intervals while the frames went by:

* per node: first and last frame, its timeout, and every silence longer than the timeout
  as (last frame before, first frame after) (:attr:`candiag.health.nodes.NodeState.gaps`);
* per contactor: every interval its command and feedback disagreed, from the first
  disagreeing pair to the first agreeing one, with the coil current seen meanwhile, and
  the intervals its weld bit was set (:class:`candiag.health.signals.ContactorFact`);
* the controller's stays in error-warning, error-passive and bus-off, exact to the error
  frames (or link states) that moved it (:attr:`BusStateTracker.intervals`);
* per node and alarm bit (role ``alarm:*``): every interval it was set, exact to the
  frames, cut where its message went stale; per role signal of the signal rules (pump
  command, flow, coolant temperature, module output current, meter current): each second's
  last value and its frame time (:class:`candiag.health.signals.SignalEvidence`);
* per-second columns (a sparse seconds axis): error frames per class and the load ratio,
  from the sliding windows' ring (offline: its whole history; live: its last hour);
* the window rules' group (:mod:`candiag.diagnosis.windowrules`): all error frames, the
  protocol errors' types and the frames dropped per second, the changes of the
  error counters' direction, the last TEC/REC and the bitrate when known.
* nodes group: per node its duplicate stretches (rate judged at every arrival, and its
  duplicate-address alarm bit) and every firmware change; per identifier the stretches
  it broke its declared cycle (:class:`candiag.health.cycles.CycleHistory`).
* per polled power module (liveness group): every judged request with its answer's latency
  and second answers, late replies, error replies, serial changes and duplicate-address
  bits (:class:`candiag.liveness.exchanges.ModuleExchanges`; live: the last hour).

Offline it covers the whole capture; live, what the trackers remember (bounded per node
and contactor).  Built by :func:`bus_timeline` from a :class:`BusPipeline`; read by
:mod:`candiag.diagnosis.intervals`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from candiag.health.cycles import CycleBreak
from candiag.health.errorframes import ERROR_CLASSES
from candiag.health.ids import EXTENDED_KEY_BIT, id_key_text
from candiag.health.signalevidence import AlarmTrace, RoleSeries
from candiag.health.signals import Disagreement
from candiag.health.windows import PROTOCOL_TYPE_COLUMNS

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
# Per-second columns the rules read (names of the windows' ring, docs/diagnosis.md).
EVIDENCE_COLUMNS = (
    "errors_ack",
    "errors_protocol",
    "errors_transceiver",
    "errors_unclassified",
    "errors_bus_off",
    "bus_off_events",
    # The window rules (candiag.diagnosis.windowrules).
    "frames_error",
    *(f"errors_{c}" for c in ERROR_CLASSES),
    *(f"protocol_{t}" for t in PROTOCOL_TYPE_COLUMNS),
    "frames_dropped",
)

if TYPE_CHECKING:
    from candiag.health.pipeline import BusPipeline
    from candiag.liveness.exchanges import ModuleExchanges


@dataclass(frozen=True)
class NodePresence:
    """When one node was heard, and its silences longer than its timeout."""

    family: str
    address: int
    first_seen: float | None
    last_seen: float | None
    timeout_s: float
    gaps: tuple[tuple[float, float], ...]
    expected: bool = False
    # -- nodes group (candiag/diagnosis/noderules.py) --
    # Two senders at its address: (start, end or None, peak rate ratio).
    duplicates: tuple[tuple[float, float | None, float], ...] = ()
    # Its duplicate-address alarm bit set: (start, end or None).
    alarm_duplicates: tuple[tuple[float, float | None], ...] = ()
    # Per firmware message, every change: (first frame with it, version text).
    firmware: Mapping[str, tuple[tuple[float, str], ...]] = field(default_factory=dict)
    frames: int = 0


@dataclass(frozen=True)
class CycleSpan:
    """A stretch an identifier broke its declared cycle (:class:`CycleBreak`: bounds and
    figures), with what the texts name it by."""

    id: str  # as CAN users write it (0x123, 0x00000123 extended)
    name: str | None  # the DBC's message name
    family: str | None
    node: int | None
    cycle_ms: float | None
    stretch: CycleBreak


@dataclass(frozen=True)
class ContactorTrace:
    """One contactor's disagreements and weld-bit intervals (end None: still so)."""

    name: str
    disagreements: tuple[Disagreement, ...]
    weld_bits: tuple[tuple[float, float | None], ...]
    last_seen: float | None


@dataclass(frozen=True)
class BusTimeline:
    """The interval evidence of one bus from ``start`` to ``end`` (data or wall time)."""

    bus: str
    start: float | None
    end: float | None
    nodes: tuple[NodePresence, ...] = ()
    contactors: tuple[ContactorTrace, ...] = ()
    # State name -> stays [(entered, left or None)], error-active left out.
    states: Mapping[str, tuple[tuple[float, float | None], ...]] = field(default_factory=dict)
    seconds: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    columns: Mapping[str, I64] = field(default_factory=dict)
    load_ratio: F64 | None = None  # per second of ``seconds``; None: bitrate unknown
    # -- the window rules (candiag.diagnosis.windowrules) --
    bitrate: int | None = None  # None: only assumed (no text may tell to set it)
    # Each change of the error counters' direction: (instant, falling), oldest first.
    trend_changes: tuple[tuple[float, bool], ...] = ()
    tec: int | None = None  # the last counters carried by an error frame
    rec: int | None = None
    # -- signal rules (CAN_NODE_ALARM_*, COOLING_*, METER_REVERSED; diagnosis/signalrules.py):
    # every alarm bit's intervals per node, exact to the frames, and the role signals'
    # last value of each second (role -> one series per message, signal and node).
    alarms: tuple[AlarmTrace, ...] = ()
    series: Mapping[str, tuple[RoleSeries, ...]] = field(default_factory=dict)
    # -- nodes group (candiag/diagnosis/noderules.py) --
    bitrate_known: bool = False
    allowed_firmware: Mapping[str, frozenset[str]] = field(default_factory=dict)
    cycle_breaks: tuple[CycleSpan, ...] = ()
    # Liveness group: polled power modules' exchanges (candiag/liveness/intervals.py).
    modules: tuple[ModuleExchanges, ...] = ()


def bus_timeline(pipeline: BusPipeline, now: float | None = None) -> BusTimeline:
    """The timeline of ``pipeline``'s bus up to ``now`` (default: its last frame)."""
    end = pipeline.last_ts if now is None else now
    tracker = pipeline.nodes
    nodes = tuple(
        NodePresence(
            family=node.family,
            address=node.address,
            first_seen=node.first_seen,
            last_seen=node.last_seen,
            timeout_s=tracker.timeout_for(node.family),
            gaps=tuple(node.gaps),
            expected=tracker.is_expected(node.family, node.address),
            # -- nodes group --
            duplicates=(
                *node.duplicates,
                *(
                    [(*node.duplicate_open[:1], None, node.duplicate_open[1])]
                    if node.duplicate_open is not None
                    else []
                ),
            ),
            alarm_duplicates=(
                *node.alarm_duplicates,
                *([(node.alarm_open, None)] if node.alarm_open is not None else []),
            ),
            firmware={m: tuple(c) for m, c in node.firmware_changes.items()},
            frames=node.frames,
        )
        for _, node in sorted(tracker.nodes.items())
    )
    contactors = tuple(
        ContactorTrace(
            name=fact.name,
            disagreements=tuple(fact.all_disagreements()),
            weld_bits=tuple(fact.weld_bits.all()),
            last_seen=fact.last_ts,
        )
        for fact in pipeline.signals.contactors.values()
        if fact.last_ts is not None
    )
    seconds, values = pipeline.windows.ring.series()
    index = pipeline.windows.ring.index
    columns = {name: values[:, index[name]] for name in EVIDENCE_COLUMNS if name in index}
    load = None
    if pipeline.bitrate_known and pipeline.windows.bitrate:
        load = pipeline.windows.load_ratios(values)
    states = {k: tuple(v) for k, v in pipeline.state.intervals.items()}
    return BusTimeline(
        pipeline.name,
        pipeline.first_ts,
        end,
        nodes,
        contactors,
        states=states,
        seconds=seconds,
        columns=columns,
        load_ratio=load if load is not None and load.size == seconds.size else None,
        # -- the window rules --
        bitrate=pipeline.bitrate if pipeline.bitrate_known else None,
        trend_changes=tuple(pipeline.state.trend_changes),
        tec=pipeline.state.tec,
        rec=pipeline.state.rec,
        # signal rules
        alarms=pipeline.signals.evidence.alarm_traces(end),
        series=pipeline.signals.evidence.role_series(),
        # -- nodes group --
        bitrate_known=pipeline.bitrate_known,
        allowed_firmware={
            family: tracker.allowed_firmware(family)
            for family in {n.family for n in nodes}
            if tracker.allowed_firmware(family)
        },
        cycle_breaks=_cycle_spans(pipeline, pipeline.cycle_breaks()),
        # Liveness group: what the liveness tracker recorded per polled module.
        modules=pipeline.liveness.timeline() if pipeline.liveness.active else (),
    )


# -- nodes group (candiag/diagnosis/noderules.py) ------------------------------------------


def _cycle_spans(pipeline: BusPipeline, breaks: list[CycleBreak]) -> tuple[CycleSpan, ...]:
    """Each broken-cycle stretch with the id's text, message, family and node."""
    if not breaks:
        return ()
    keys = np.array(sorted({b.key for b in breaks}), np.int64)
    can_id = (keys & 0x1FFFFFFF).astype(np.uint32)
    extended = ((keys >> 30) & 1).astype(np.bool_)
    index, node = pipeline.db.match(can_id, extended)
    known: dict[int, tuple[str, str | None, str | None, int | None, float | None]] = {}
    for k, i, n, c, e in zip(
        keys.tolist(),
        index.tolist(),
        node.tolist(),
        can_id.tolist(),
        extended.tolist(),
        strict=True,
    ):
        message = pipeline.db.messages[i] if i >= 0 else None
        text = id_key_text(int(c) | (EXTENDED_KEY_BIT if e else 0))
        known[k] = (
            text,
            message.name if message else None,
            message.family if message else None,
            n if n >= 0 else None,
            message.cycle_time_ms if message else None,
        )
    return tuple(CycleSpan(*known[b.key], b) for b in breaks)
