"""Interval rules of the nodes group: bus-wide silence, intermittent and duplicate nodes,
firmware, and identifiers that break their cycle time.

Each reads a bus's :class:`~candiag.diagnosis.timeline.BusTimeline` once and gives every
episode of its fault, with the meaning and thresholds of the instant rules it replaces
(``docs/diagnosis.md``, "Nodes, firmware and cycle times"):

* ``CAN_BUS_SILENT``: every node heard so far (at least two) silent at once, and the
  controller not bus-off: the intersection of the nodes' offline episodes (each from its
  last frame before a silence longer than its timeout to its first frame after), from the
  last frame any node sent to the first frame any node sent again, minus the bus-off stays.
  It is raised only where every node had been silent for its timeout at once.
* ``CAN_NODE_INTERMITTENT``: from each return of a node after a dropout, for
  :data:`~candiag.health.nodes.INTERMITTENT_MEMORY_S` (the hysteresis, in time), minus the
  node's offline and duplicate episodes; returns of most nodes together (a bus-level event)
  are not the node's dropouts.
* ``CAN_NODE_DUPLICATE``: the stretches two senders shared the address (the rate over the
  last arrivals at least :data:`~candiag.health.nodes.DUPLICATE_RATE_FACTOR` times the
  nominal one, judged at every arrival, bounded by the fast arrivals themselves) or its
  duplicate-address alarm bit was set, minus its offline episodes.
* ``CAN_FW_MISMATCH``: from the first frame of a version the family's other nodes do not
  run (per firmware message) to the first frame that made them agree again.
* ``CAN_FW_NOT_ALLOWED``: from the first frame of a version not in the config's allowed
  list to the first frame of another version.
* ``CAN_CYCLE_VIOLATION``: where an identifier broke its declared cycle over the last
  minute (mean off by more than the tolerance, or the 95th percentile too long), judged
  every 10 s and bounded by the 10 s steps that held the fault
  (:class:`candiag.health.cycles.CycleHistory`), minus the steps its node's offline or
  duplicate episodes, a bus-off or a bus-wide silence reach: those explain the broken
  periods (their own findings say so).
  Identifiers of a protocol pack's requests and replies are not judged here (their timing
  is the controller's polling, judged by the liveness findings).

An episode that reaches the end of the data is open (``end`` None): nothing proves the
fault ended.  A loop here runs per node, identifier, stretch or episode, never per frame.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from candiag.diagnosis.engine import RuleBook
from candiag.diagnosis.episodes import Episode, settle
from candiag.diagnosis.intervalrule import IntervalFinding
from candiag.diagnosis.rules import bitrate_fields
from candiag.diagnosis.timeline import BusTimeline, CycleSpan, NodePresence
from candiag.health.cycles import CYCLE_STEP_S
from candiag.health.nodes import INTERMITTENT_MEMORY_S

CODES = frozenset(
    {
        "CAN_BUS_SILENT",
        "CAN_NODE_INTERMITTENT",
        "CAN_NODE_DUPLICATE",
        "CAN_FW_MISMATCH",
        "CAN_FW_NOT_ALLOWED",
        "CAN_CYCLE_VIOLATION",
    }
)
# Returns of most nodes within this of each other are one bus-level event (a bus-off, a
# cable pulled), not each node's dropout.
BUS_WIDE_RETURN_S = 1.0
BUS_WIDE_SHARE = 0.75
BUS_WIDE_MIN_NODES = 3

INF = math.inf
Span = tuple[float, float]  # [start, end); end inf: still so at the end of the data
NodeKey = tuple[str, int]


def node_rules(book: RuleBook, timeline: BusTimeline) -> list[IntervalFinding]:
    """Every finding of the nodes group on one bus."""
    offline = {_key(n): _spans(silences(n, timeline)) for n in timeline.nodes}
    bus_off = _union((a, INF if b is None else b) for a, b in timeline.states.get("bus_off", ()))
    silent = bus_silent_spans(timeline, offline, bus_off)
    duplicate = {_key(n): _subtract(duplicate_spans(n), offline[_key(n)]) for n in timeline.nodes}
    base = _bus_fields(timeline)
    out: list[IntervalFinding] = []
    if silent:
        seen = [n for n in timeline.nodes if n.first_seen is not None]
        evidence = {"nodes": len(seen), "last_frame": silent[-1][0]}
        proof = max(n.timeout_s for n in seen)
        episodes = _episodes(silent, timeline.end)
        out.append(IntervalFinding("CAN_BUS_SILENT", timeline.bus, episodes, base, evidence, proof))
    bus_wide = bus_wide_returns(timeline.nodes)
    for node in timeline.nodes:
        key = _key(node)
        out.extend(_intermittent(timeline, node, offline[key], duplicate[key], bus_wide, base))
        out.extend(_duplicate(timeline, node, duplicate[key], base))
        out.extend(_not_allowed(timeline, node, base))
    out.extend(_mismatches(timeline, base))
    out.extend(_cycles(timeline, offline, duplicate, _union([*bus_off, *silent]), base))
    return out


def _bus_fields(timeline: BusTimeline) -> dict[str, Any]:
    """``bus``, ``bitrate`` and ``bus_bitrate`` for the texts (see
    :func:`candiag.diagnosis.rules.bitrate_fields`: an assumed bitrate is no instruction)."""
    return {"bus": timeline.bus, **bitrate_fields(timeline.bitrate, timeline.bitrate_known)}


def _key(node: NodePresence) -> NodeKey:
    return (node.family, node.address)


def _node_fields(base: Mapping[str, Any], node: NodePresence) -> dict[str, Any]:
    return {
        **base,
        "family": node.family.replace("_", " "),
        "address": node.address,
        "dropouts": len(node.gaps),
    }


def _subject(timeline: BusTimeline, node: NodePresence) -> str:
    return f"{timeline.bus}/{node.family}/{node.address}"


# -- offline and bus-wide silence -------------------------------------------------------


def silences(node: NodePresence, timeline: BusTimeline) -> tuple[Episode, ...]:
    """A node's offline episodes: each silence longer than its timeout, from the last
    frame before to the first after; open when it never came back (or was never heard
    though expected)."""
    episodes = [Episode(before, after) for before, after in node.gaps]
    end = timeline.end
    if node.last_seen is None:
        if node.expected and timeline.start is not None:
            episodes.append(Episode(timeline.start, None))  # expected, never heard
    elif end is not None and end - node.last_seen > node.timeout_s:
        episodes.append(Episode(node.last_seen, None))  # never came back
    return tuple(sorted(episodes, key=lambda e: e.start))


def bus_silent_spans(
    timeline: BusTimeline, offline: Mapping[NodeKey, list[Span]], bus_off: list[Span]
) -> list[Span]:
    """Where every node heard so far (two or more) was silent at once, minus bus-off.

    ``raw`` intersects the silences from each node's last frame; ``proof`` the same from
    its last frame plus its timeout (where the instant rule would have seen every node
    offline).  A raw stretch is kept when some proof lies inside it.
    """
    seen = [n for n in timeline.nodes if n.first_seen is not None]
    if len(seen) < 2:
        return []
    raw: list[Span] = [(-INF, INF)]
    proof: list[Span] = [(-INF, INF)]
    for node in seen:
        before = (-INF, float(node.first_seen or 0.0))
        spans = offline[_key(node)]
        raw = _intersect(raw, [before, *spans])
        late = [(a + node.timeout_s, b) for a, b in spans if a + node.timeout_s < b]
        proof = _intersect(proof, [before, *late])
    second = sorted(float(n.first_seen or 0.0) for n in seen)[1]
    raw = _intersect(raw, [(second, INF)])
    proof = _intersect(proof, raw)
    raw = [r for r in raw if any(_meet(r, p) for p in proof)]
    # Silent to the controller while it was bus-off is not silence of the bus: what is
    # left beside a bus-off stay counts only when it alone lasted every node's timeout.
    longest = max(n.timeout_s for n in seen)
    out = []
    for piece in _subtract(raw, bus_off):
        beside = any(piece[0] == b or piece[1] == a for a, b in bus_off)
        if not beside or piece[1] - piece[0] > longest:
            out.append(piece)
    return out


def bus_wide_returns(nodes: Sequence[NodePresence]) -> set[float]:
    """Instants most nodes came back together (within :data:`BUS_WIDE_RETURN_S`)."""
    if len(nodes) < BUS_WIDE_MIN_NODES:
        return set()
    returns = sorted((after, _key(n)) for n in nodes for _, after in n.gaps)
    out: set[float] = set()
    cluster: list[tuple[float, NodeKey]] = []
    for item in [*returns, (INF, ("", -1))]:
        if cluster and item[0] - cluster[-1][0] > BUS_WIDE_RETURN_S:
            if len({k for _, k in cluster}) >= BUS_WIDE_SHARE * len(nodes):
                out.update(t for t, _ in cluster)
            cluster = []
        cluster.append(item)
    return out


# -- intermittent and duplicate nodes -----------------------------------------------------


def _intermittent(
    timeline: BusTimeline,
    node: NodePresence,
    offline: list[Span],
    duplicate: list[Span],
    bus_wide: set[float],
    base: Mapping[str, Any],
) -> list[IntervalFinding]:
    returns = [after for _, after in node.gaps if after not in bus_wide]
    if not returns:
        return []
    spans = _union((r, r + INTERMITTENT_MEMORY_S) for r in returns)
    end = INF if timeline.end is None else timeline.end
    spans = [(a, INF if b >= end else b) for a, b in spans]
    spans = _subtract(_subtract(spans, offline), duplicate)
    if not spans:
        return []
    evidence = {
        "last_seen": node.last_seen,
        "timeout_s": node.timeout_s,
        "frames": node.frames,
        "dropouts": len(returns),
        "last_dropout_end": returns[-1],
        "longest_gap_s": round(max(b - a for a, b in node.gaps), 3),
    }
    # Its own dropouts: a bus-wide silence is no dropout of this node.
    fields = {**_node_fields(base, node), "dropouts": len(returns)}
    return [
        IntervalFinding(
            "CAN_NODE_INTERMITTENT",
            _subject(timeline, node),
            _episodes(spans, timeline.end),
            fields,
            {**evidence, "bus_wide_dropouts": len(node.gaps) - len(returns)},
        )
    ]


def duplicate_spans(node: NodePresence) -> list[Span]:
    """Where two senders shared the node's address: by rate, or by its own alarm bit."""
    rate = [(a, INF if b is None else b) for a, b, _ in node.duplicates]
    alarm = [(a, INF if b is None else b) for a, b in node.alarm_duplicates]
    return [(a, b) for a, b in _union([*rate, *alarm]) if b > a]


def _duplicate(
    timeline: BusTimeline, node: NodePresence, spans: list[Span], base: Mapping[str, Any]
) -> list[IntervalFinding]:
    if not spans:
        return []
    peaks = [p for _, _, p in node.duplicates if p]
    ratio = round(max(peaks), 3) if peaks else None  # as the report's JSON gives it
    evidence = {
        "last_seen": node.last_seen,
        "timeout_s": node.timeout_s,
        "frames": node.frames,
        "dropouts": len(node.gaps),
        "rate_ratio": ratio,
        "alarm": bool(node.alarm_duplicates),
    }
    fields = {**_node_fields(base, node), "rate_ratio": ratio}
    episodes = _episodes(spans, timeline.end)
    return [
        IntervalFinding("CAN_NODE_DUPLICATE", _subject(timeline, node), episodes, fields, evidence)
    ]


# -- firmware ------------------------------------------------------------------------------


def _version_at(changes: Sequence[tuple[float, str]], t: float) -> str | None:
    current = None
    for since, version in changes:
        if since > t:
            break
        current = version
    return current


def _mismatches(timeline: BusTimeline, base: Mapping[str, Any]) -> list[IntervalFinding]:
    """Per family, where its nodes ran different versions (of any firmware message)."""
    families: dict[str, list[NodePresence]] = {}
    for node in timeline.nodes:
        if node.firmware:
            families.setdefault(node.family, []).append(node)
    out = []
    for family, nodes in sorted(families.items()):
        spans: list[Span] = []
        last_state: dict[str, list[int]] = {}
        for message in sorted({m for n in nodes for m in n.firmware}):
            changes = {n.address: n.firmware.get(message, ()) for n in nodes}
            points = sorted({t for c in changes.values() for t, _ in c})
            for k, t in enumerate(points):
                state: dict[str, list[int]] = {}
                for address, history in sorted(changes.items()):
                    version = _version_at(history, t)
                    if version is not None:
                        state.setdefault(version, []).append(address)
                if len(state) > 1:
                    spans.append((t, points[k + 1] if k + 1 < len(points) else INF))
                    last_state = state
        spans = _union(spans)
        if not spans:
            continue
        majority = max(sorted(last_state), key=lambda v: len(last_state[v]))
        outliers = sorted(a for v, addrs in last_state.items() if v != majority for a in addrs)
        name = family.replace("_", " ")
        fields = {
            **base,
            "family": name,
            "versions": "; ".join(f"{v}: {sorted(a)}" for v, a in sorted(last_state.items())),
            "majority": majority,
            "outliers": f"{name} {', '.join(map(str, outliers))}",
        }
        allowed = timeline.allowed_firmware.get(family, frozenset())
        evidence = {
            "family": family,
            "majority": majority,
            "by_version": {v: sorted(a) for v, a in sorted(last_state.items())},
            "not_allowed": {
                str(a): v
                for v, addrs in sorted(last_state.items())
                for a in sorted(addrs)
                if allowed and v not in allowed
            },
        }
        out.append(
            IntervalFinding(
                "CAN_FW_MISMATCH",
                f"{timeline.bus}/{family}",
                _episodes(spans, timeline.end),
                fields,
                evidence,
            )
        )
    return out


def _not_allowed(
    timeline: BusTimeline, node: NodePresence, base: Mapping[str, Any]
) -> list[IntervalFinding]:
    allowed = timeline.allowed_firmware.get(node.family)
    if not allowed or not node.firmware:
        return []
    spans: list[Span] = []
    latest = ""
    for changes in node.firmware.values():
        for k, (since, version) in enumerate(changes):
            if version not in allowed:
                until = changes[k + 1][0] if k + 1 < len(changes) else INF
                spans.append((since, until))
                latest = version
    if not spans:
        return []
    address = str(node.address)  # as the report's JSON keys it
    fields = {
        **base,
        "family": node.family.replace("_", " "),
        "address": address,
        "version": latest,
        "allowed": ", ".join(sorted(allowed)),
    }
    return [
        IntervalFinding(
            "CAN_FW_NOT_ALLOWED",
            f"{timeline.bus}/{node.family}/{address}",
            _episodes(_union(spans), timeline.end),
            fields,
            {"version": latest, "allowed": sorted(allowed)},
        )
    ]


# -- cycle times ----------------------------------------------------------------------------


def _cycles(
    timeline: BusTimeline,
    offline: Mapping[NodeKey, list[Span]],
    duplicate: Mapping[NodeKey, list[Span]],
    bus_level: list[Span],
    base: Mapping[str, Any],
) -> list[IntervalFinding]:
    """Broken stretches per identifier, minus the steps its node's silence or duplicate,
    a bus-off or a bus-wide silence explain."""
    by_id: dict[str, list[tuple[Span, CycleSpan]]] = {}
    for span in timeline.cycle_breaks:
        node: NodeKey | None = None
        if span.family is not None:
            node = (span.family, 0 if span.node is None else span.node)
        explained = list(bus_level)
        if node is not None:
            explained += [*offline.get(node, ()), *duplicate.get(node, ())]
        cycle_s = (span.cycle_ms or 0.0) / 1000.0
        cut = _union(_steps_of(a, b, cycle_s) for a, b in explained)
        for piece in _subtract([(span.stretch.start, span.stretch.end)], cut):
            by_id.setdefault(span.id, []).append((piece, span))
    out = []
    start = -INF if timeline.start is None else timeline.start
    end = INF if timeline.end is None else timeline.end
    for ident, pieces in sorted(by_id.items()):
        last = max(pieces, key=lambda p: p[0][1])[1]
        raw = [(max(a, start), INF if b > end else b) for (a, b), _ in pieces]
        fields = {**base, "id": last.name or ident}
        evidence = {
            "cycle_ms": last.cycle_ms,
            "mean_period_s": last.stretch.mean_period_s,
            "jitter_s": last.stretch.jitter_s,
            "count": last.stretch.count,
            "last_seen": last.stretch.last_seen,
            "family": last.family,
            "node": last.node,
            "stretches": len(_union(raw)),
        }
        out.append(
            IntervalFinding(
                "CAN_CYCLE_VIOLATION",
                f"{timeline.bus}/{ident}",
                _episodes(_union(raw), timeline.end),
                fields,
                evidence,
                CYCLE_STEP_S,  # judged at the end of the first step that held it
            )
        )
    return out


def _steps_of(start: float, end: float, cycle_s: float) -> Span:
    """The cycle steps an explaining interval reaches: from the step of its start to the
    step holding the id's first period after it (its end plus up to two cycles)."""
    first = math.floor(start / CYCLE_STEP_S) * CYCLE_STEP_S
    if end == INF:
        return (first, INF)
    return (first, (math.floor((end + 2 * cycle_s) / CYCLE_STEP_S) + 1) * CYCLE_STEP_S)


# -- interval arithmetic (sorted lists of [start, end) spans; a loop per span) -----------


def _spans(episodes: Iterable[Episode]) -> list[Span]:
    return _union((e.start, INF if e.end is None else e.end) for e in episodes)


def _episodes(spans: Sequence[Span], data_end: float | None) -> tuple[Episode, ...]:
    out = [
        Episode(a, None if b == INF or (data_end is not None and b > data_end) else b)
        for a, b in spans
    ]
    return tuple(settle(out))


def _union(spans: Iterable[Span]) -> list[Span]:
    """The union of ``spans`` as sorted, disjoint spans (touching ones merged)."""
    out: list[Span] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _intersect(left: Sequence[Span], right: Sequence[Span]) -> list[Span]:
    """Where both hold; each list sorted and disjoint."""
    out: list[Span] = []
    i = j = 0
    while i < len(left) and j < len(right):
        a = max(left[i][0], right[j][0])
        b = min(left[i][1], right[j][1])
        if a < b:
            out.append((a, b))
        if left[i][1] < right[j][1]:
            i += 1
        else:
            j += 1
    return out


def _subtract(spans: Sequence[Span], cut: Sequence[Span]) -> list[Span]:
    """``spans`` except where ``cut`` holds."""
    if not cut:
        return list(spans)
    out: list[Span] = []
    for a, b in spans:
        start = a
        for c, d in cut:
            if d <= start or c >= b:
                continue
            if c > start:
                out.append((start, c))
            start = max(start, d)
            if start >= b:
                break
        if start < b:
            out.append((start, b))
    return out


def _meet(a: Span, b: Span) -> bool:
    return a[0] < b[1] and b[0] < a[1]
