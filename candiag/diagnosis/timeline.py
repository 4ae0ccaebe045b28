"""A bus's fact timeline: the evidence interval rules read, exact to the frames.

Instants ("what is wrong now?") miss a fault that comes and goes between two looks, and
place the ones they see on the evaluation grid.  The timeline keeps what the health
trackers recorded as intervals while the frames went by:

* per node: first and last frame, its timeout, and every silence longer than the timeout
  as (last frame before, first frame after) (:attr:`candiag.health.nodes.NodeState.gaps`);
* per contactor: every interval its command and feedback disagreed, from the first
  disagreeing pair to the first agreeing one, with the coil current seen meanwhile, and
  the intervals its weld bit was set (:class:`candiag.health.signals.ContactorFact`).

Offline it covers the whole capture; live, what the trackers remember (bounded per node
and contactor).  Built by :func:`bus_timeline` from a :class:`BusPipeline`; read by
:mod:`candiag.diagnosis.intervals`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from candiag.health.signals import Disagreement

if TYPE_CHECKING:
    from candiag.health.pipeline import BusPipeline


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
    return BusTimeline(pipeline.name, pipeline.first_ts, end, nodes, contactors)
