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
* per-second columns (a sparse seconds axis): error frames per class and the load ratio,
  from the sliding windows' ring (offline: its whole history; live: its last hour);
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

from candiag.health.signals import Disagreement

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
        # Liveness group: what the liveness tracker recorded per polled module.
        modules=pipeline.liveness.timeline() if pipeline.liveness.active else (),
    )
