"""Interval rules: findings read off a bus's timeline, with episodes exact to the frames.

Each rule is a pure function ``(book, timeline) -> list[IntervalFinding]``, one finding per
(code, subject) with every episode of it.  Where an instant rule would place a fault on
its evaluation grid (and miss one that came and went between two looks), these bound
each episode by the frames that prove it (docs/diagnosis.md, "Episodes"):

* ``CAN_NODE_OFFLINE``: from the node's last frame before a silence longer than its
  timeout to its first frame after it; open (``end`` None) when it never came back.
* ``CONTACTOR_MISMATCH``: from the first command/feedback pair that disagrees to the
  first that agrees again, when that lasted at least ``contactor_feedback_s`` (a shorter
  disagreement is the contactor's normal switching time).
* ``CONTACTOR_WELD``: feedback still closed after an open command for longer than
  ``contactor_weld_s`` with no coil current (``coil_off_a``; unknown coil current counts
  as none), as the reference DBC defines a weld, with or without the weld bit; and every
  interval the contactor board's own weld bit was set.

* ``CAN_BUS_OFF``, ``CAN_ERROR_PASSIVE``: the controller's stays in that state, from the
  error frame (or link state) that put it there to the one that moved it on.

Window rules (error classes, load, dropped frames, rising error counters) are in
:mod:`candiag.diagnosis.windowrules`: the instant rules' 60-s definitions evaluated at
every second, their episodes bounded by the seconds that hold the evidence.

The hysteresis is in time and part of each definition: a node's timeout and the two
contactor times decide when an episode is raised; the first frame that disproves the
fault ends it.  Episodes are not merged across such a frame: a node that drops out three
times has three episodes (its ``occurrences``), each with its true bounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from candiag.diagnosis.engine import RuleBook
from candiag.diagnosis.episodes import Episode, settle
from candiag.diagnosis.intervalrule import IntervalFinding, IntervalRule
from candiag.diagnosis.noderules import CODES as NODE_CODES
from candiag.diagnosis.noderules import node_rules, silences
from candiag.diagnosis.signalrules import RULES as SIGNAL_RULES
from candiag.diagnosis.timeline import BusTimeline, ContactorTrace
from candiag.diagnosis.windowrules import WINDOW_CODES, window_rules
from candiag.health.signals import CLOSED, OPEN
from candiag.liveness.intervals import LIVENESS_CODES, liveness_faults

STATE_CODES = {"CAN_BUS_OFF": "bus_off", "CAN_ERROR_PASSIVE": "error_passive"}


def interval_findings(book: RuleBook, timelines: Sequence[BusTimeline]) -> list[IntervalFinding]:
    """Every interval rule over every bus's timeline."""
    out: list[IntervalFinding] = []
    for timeline in timelines:
        for rule in RULES:
            out.extend(rule.find(book, timeline))
    return out


def bus_states(book: RuleBook, timeline: BusTimeline) -> list[IntervalFinding]:
    """Bus-off and error-passive: the controller's stays in those states."""
    out = []
    for code, state in STATE_CODES.items():
        stays = timeline.states.get(state, ())
        if stays:
            episodes = tuple(settle(Episode(a, b) for a, b in stays))
            evidence = {"stays": len(stays), "state": state}
            out.append(IntervalFinding(code, timeline.bus, episodes, _base(timeline), evidence))
    return out


def _base(timeline: BusTimeline) -> dict[str, Any]:
    return {"bus": timeline.bus}


# -- nodes ---------------------------------------------------------------------------------


def node_offline(book: RuleBook, timeline: BusTimeline) -> list[IntervalFinding]:
    """A node silent for longer than its timeout, once per silence."""
    out = []
    for node in timeline.nodes:
        episodes = silences(node, timeline)
        if not episodes:
            continue
        subject = f"{timeline.bus}/{node.family}/{node.address}"
        fields = {
            **_base(timeline),
            "family": node.family.replace("_", " "),
            "address": node.address,
            "silent": _silent_words(episodes, timeline.end),
        }
        evidence = {
            "first_seen": node.first_seen,
            "last_seen": node.last_seen,
            "timeout_s": node.timeout_s,
            "dropouts": sum(1 for e in episodes if e.end is not None),
            "never_came_back": episodes[-1].end is None,
        }
        out.append(
            IntervalFinding("CAN_NODE_OFFLINE", subject, episodes, fields, evidence, node.timeout_s)
        )
    return out


def _silent_words(episodes: Sequence[Episode], end: float | None) -> str:
    last = episodes[-1]
    if last.end is None:
        head = "never heard" if end is None else f"silent for the last {end - last.start:.1f} s"
        earlier = len(episodes) - 1
        return head + (f", after {earlier} earlier dropout(s)" if earlier else "")
    longest = max(e.duration() or 0.0 for e in episodes)
    if len(episodes) == 1:
        return f"silent for {longest:.1f} s"
    return f"silent {len(episodes)} times, longest {longest:.1f} s"


# -- contactors ------------------------------------------------------------------------------


def contactor_faults(book: RuleBook, timeline: BusTimeline) -> list[IntervalFinding]:
    out = []
    for trace in timeline.contactors:
        mismatch, weld = _contactor_episodes(book, trace, timeline.end)
        subject = f"{timeline.bus}/{trace.name}"
        fields = {**_base(timeline), "contactor": trace.name}
        evidence = _contactor_evidence(trace)
        if weld:
            ev = {**evidence, "weld_bit_set": bool(trace.weld_bits)}
            proof = 0.0 if trace.weld_bits else book.t("contactor_weld_s")
            out.append(IntervalFinding("CONTACTOR_WELD", subject, weld, fields, ev, proof))
        if mismatch:
            proof = book.t("contactor_feedback_s")
            out.append(
                IntervalFinding("CONTACTOR_MISMATCH", subject, mismatch, fields, evidence, proof)
            )
    return out


def _contactor_evidence(trace: ContactorTrace) -> dict[str, Any]:
    """What the technician checks: the values of the latest disagreement, the longest one,
    the coil current during it (None: not known) and when the board was last heard."""
    evidence: dict[str, Any] = {"last_seen": trace.last_seen}
    if trace.disagreements:
        latest = trace.disagreements[-1]
        lengths = [d.end - d.start for d in trace.disagreements if d.end is not None]
        evidence.update(
            command=latest.command,
            feedback=latest.feedback,
            disagreements=len(trace.disagreements),
            longest_s=round(max(lengths), 3) if lengths else None,
            coil_current_max_a=latest.coil_max,
        )
    return evidence


def _contactor_episodes(
    book: RuleBook, trace: ContactorTrace, end: float | None
) -> tuple[tuple[Episode, ...], tuple[Episode, ...]]:
    feedback_s = book.t("contactor_feedback_s")
    weld_s = book.t("contactor_weld_s")
    coil_off = book.t("coil_off_a")
    mismatch: list[Episode] = []
    weld = [Episode(a, b) for a, b in trace.weld_bits]
    for d in trace.disagreements:
        stop = d.end if d.end is not None else end
        lasted = None if stop is None else stop - d.start
        stuck_closed = d.command == OPEN and d.feedback == CLOSED
        no_coil = d.coil_max is None or d.coil_max < coil_off
        if stuck_closed and no_coil and (lasted is None or lasted > weld_s):
            weld.append(Episode(d.start, d.end))
        elif lasted is None or lasted >= feedback_s:
            mismatch.append(Episode(d.start, d.end))
    return tuple(settle(mismatch)), tuple(settle(weld))


# -- the registry ----------------------------------------------------------------------------

#: Every interval rule, each group with the codes it owns (instants do not judge them).
RULES: tuple[IntervalRule, ...] = (
    IntervalRule(frozenset(STATE_CODES), bus_states),
    IntervalRule(frozenset({"CAN_NODE_OFFLINE"}), node_offline),
    IntervalRule(frozenset({"CONTACTOR_MISMATCH", "CONTACTOR_WELD"}), contactor_faults),
    IntervalRule(WINDOW_CODES, window_rules),
    *SIGNAL_RULES,  # node alarm bits, cooling, the CAN DC meter's sign (signalrules.py)
    IntervalRule(NODE_CODES, node_rules),
    IntervalRule(LIVENESS_CODES, liveness_faults),  # candiag/liveness/intervals.py
)
#: The codes interval rules own: instants do not judge them.
INTERVAL_CODES: frozenset[str] = frozenset().union(*(rule.codes for rule in RULES))
