"""The liveness findings as interval rules: episodes exact to the requests and replies.

Read off a bus timeline's polled modules (:class:`~candiag.liveness.exchanges.ModuleExchanges`,
what the :class:`~candiag.liveness.tracker.LivenessTracker` recorded), with the thresholds
of the ``liveness_*`` keys of ``[thresholds]`` (:class:`~candiag.liveness.rules.LivenessThresholds`)
and the meaning of the instant conditions of :mod:`candiag.liveness.rules`
(docs/liveness.md, "Findings as episodes"):

* ``CAN_MODULE_NOT_ANSWERING``: a run of at least ``liveness_unanswered_in_a_row``
  unanswered requests in a row, from the first unanswered request to the first answer
  after it (open while none came, also after the controller gave the module up);
* ``CAN_MODULE_SLOW_REPLIES``: such a run while replies of the module keep arriving (late
  answers, or answers to earlier requests: from the first such reply), a run the module
  answered again within the reply window of the request that would prove it (its answers
  overtaken by the controller's next requests), and every stretch where the median
  latency over 10 s exceeds ``liveness_slow_reply_ms``, bounded by its slow answers;
* ``CAN_CONTROLLER_NOT_POLLING``: no request to a module for longer than
  ``liveness_not_polled_periods`` poll periods, from its last request to the next one
  (open while none came), except while the module is not answering (the controller gave
  up a silent module: the module is the cause); one ``bus/controller`` finding over the
  stretches where every module asked before was left alone;
* ``CAN_MODULE_REJECTS_REQUESTS``: from the first error reply to the last;
* ``CAN_MODULE_ADDRESS_CONFLICT``: second answers on at least ``liveness_conflict_min_share``
  of the answered requests within 10 s (and at least 2), a serial number changing under
  the address, or the duplicate-address bit; from the first such reply to the last.

Hysteresis, in time: the last three judge a 10-s window (:data:`WINDOW_S`) as the instant
conditions do, so evidence less than 10 s apart is one episode, and an episode whose last
evidence lies less than 10 s before the end of the data is still open.  The first two end
at the reply or request that disproves them.  Work per module is a few array passes over
its record (``np.diff``, ``np.searchsorted``, cumulative sums); loops run per episode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from candiag.diagnosis.engine import RuleBook
from candiag.diagnosis.episodes import Episode, close_at, settle
from candiag.diagnosis.intervalrule import IntervalFinding
from candiag.diagnosis.timeline import BusTimeline
from candiag.liveness.exchanges import F64, ModuleExchanges
from candiag.liveness.rules import CODES, LivenessThresholds, module_subject
from candiag.liveness.tracker import RECENT_WINDOW_S

#: The window of the windowed findings (errors, conflicts, slow medians), seconds.
WINDOW_S = RECENT_WINDOW_S
LIVENESS_CODES = frozenset(CODES)


def liveness_faults(book: RuleBook, timeline: BusTimeline) -> list[IntervalFinding]:
    """Every liveness finding of one bus, one per (code, subject) with its episodes."""
    if not timeline.modules:
        return []
    th = LivenessThresholds.from_book(book)
    end = timeline.end
    out: list[IntervalFinding] = []
    quiet: dict[int, tuple[list[Episode], dict[str, Any], float]] = {}
    for mod in timeline.modules:
        period = mod.poll_period_s or th.default_poll_period_s
        limit = th.not_polled_periods * period
        fields: dict[str, Any] = {
            "bus": timeline.bus,
            "address": mod.address,
            "protocol": mod.protocol,
            "poll_period": f"{period:g} s"
            + ("" if mod.poll_period_s else " (assumed: not declared)"),
        }
        subject = module_subject(timeline.bus, mod.address)
        silent, run_slow = _unanswered(mod, th, limit, end)
        if silent.episodes:
            out.append(silent.finding(subject, fields))
        # Gaps that touch are one stretch (a slower request kind going on beside the stopped
        # polls: the module was still left alone longer than the limit each time).
        gaps = settle(_subtract(_request_gaps(mod, limit, end), silent.episodes + run_slow))
        if gaps and mod.asked_t.size:
            quiet[mod.address] = (gaps, fields, limit)
        out.extend(_errors(mod, subject, fields, end))
        windows = _answered_windows(mod)
        out.extend(_conflicts(mod, windows, th, subject, fields, end))
        out.extend(_slow(mod, windows, th, subject, fields, run_slow, end))
    out.extend(_not_polled(timeline, quiet))
    return out


# -- not answering ---------------------------------------------------------------------------


class _Silent:
    """The not-answering episodes of one module and what its texts say."""

    def __init__(self) -> None:
        self.episodes: list[Episode] = []
        self.run = 0
        self.proof_s = 0.0
        self.gave_up = False
        self.requests = 0
        self.answered = 0

    def finding(self, subject: str, fields: dict[str, Any]) -> IntervalFinding:
        asked = (
            "the controller asked until it gave the module up"
            if self.gave_up
            else "the controller keeps asking"
        )
        evidence = {
            "unanswered_in_a_row": self.run,
            "since": self.episodes[-1].start,
            "requests": self.requests,
            "answered": self.answered,
            "controller_gave_up": self.gave_up,
            "silences": len(self.episodes),
        }
        return IntervalFinding(
            "CAN_MODULE_NOT_ANSWERING",
            subject,
            tuple(self.episodes),
            {**fields, "asked": asked, "run": self.run},
            evidence,
            self.proof_s,
        )


def _unanswered(
    mod: ModuleExchanges, th: LivenessThresholds, limit: float, end: float | None
) -> tuple[_Silent, list[Episode]]:
    """Runs of unanswered requests: silent (no reply at all) or slow (late replies)."""
    silent, slow = _Silent(), list[Episode]()
    t, latency = mod.asked_t, mod.latency_s
    missed = np.isnan(latency)
    silent.requests, silent.answered = int(t.size), int(np.count_nonzero(~missed))
    edges = np.diff(np.concatenate(([0], missed.astype(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    need = th.unanswered_in_a_row
    keep = stops - starts >= need
    if not keep.any():
        return silent, slow
    # Every reply of the module: first answers (request time + latency) and late ones.
    answered = ~missed
    replies = np.sort(np.concatenate([t[answered] + latency[answered], mod.late_t]), kind="stable")
    # The first answer to any request from each one on (answers may overtake each other).
    reply_at = np.where(answered, t + np.nan_to_num(latency, nan=0.0), np.inf)
    next_answer = np.minimum.accumulate(reply_at[::-1])[::-1]
    for a, b in zip(starts[keep].tolist(), stops[keep].tolist(), strict=True):
        first = float(t[a])
        # The first answer to a request after the run ends it.
        stop = float(next_answer[b]) if b < t.size else None
        late = _first_after(replies, first, stop)
        if late is not None:
            slow.append(Episode(late, stop))
        # Proven silent once the reply window of its ``need``-th request passed with no
        # reply of the module at all; a late reply before that makes the run slow only.
        proven = float(t[a + need - 1]) + mod.reply_window_s
        if late is not None and late <= proven:
            continue
        if stop is not None and stop <= proven:
            # Answered again within the reply window: its answers were overtaken by the
            # next requests (a reply pairs with the latest request), so slow, not silent.
            slow.append(Episode(first, stop))
            continue
        if not silent.episodes:
            silent.proof_s = proven - first
        silent.episodes.append(Episode(first, late if late is not None else stop))
        silent.run = b - a
        silent.gave_up = _gave_up(mod, b, limit, end)
    return silent, slow


def _gave_up(mod: ModuleExchanges, stop: int, limit: float, end: float | None) -> bool:
    """Whether the controller stopped asking after the run's last request (``stop - 1``):
    a gap longer than the not-polled limit before the next request, or to the end."""
    t = mod.asked_t
    if stop < t.size:
        return float(t[stop] - t[stop - 1]) > limit
    last = max(float(t[stop - 1]), mod.last_asked if mod.last_asked is not None else -np.inf)
    return end is not None and end - last > limit


def _first_after(times: F64, start: float, stop: float | None) -> float | None:
    """The first of the sorted ``times`` after ``start`` and before ``stop`` (None: none)."""
    i = int(np.searchsorted(times, start, side="right"))
    if i < times.size and (stop is None or times[i] < stop):
        return float(times[i])
    return None


# -- not polling -----------------------------------------------------------------------------


def _request_gaps(mod: ModuleExchanges, limit: float, end: float | None) -> list[Episode]:
    """Each stretch without a request to the module longer than ``limit``: from the last
    request before to the first after (open at the end of the data)."""
    t = mod.asked_t
    if not t.size:
        return []
    big = np.flatnonzero(np.diff(t) > limit)
    gaps = [Episode(float(t[i]), float(t[i + 1])) for i in big.tolist()]
    last = max(float(t[-1]), mod.last_asked if mod.last_asked is not None else -np.inf)
    if end is not None and end - last > limit:
        gaps.append(Episode(last, None))
    return gaps


def _not_polled(
    timeline: BusTimeline, quiet: dict[int, tuple[list[Episode], dict[str, Any], float]]
) -> list[IntervalFinding]:
    """Per module, and ``bus/controller`` over the stretches every asked module shares."""
    asked = [m.address for m in timeline.modules if m.asked_t.size]
    out: list[IntervalFinding] = []
    every: list[Episode] = []
    if len(asked) > 1 and all(a in quiet for a in asked):
        every = quiet[asked[0]][0]
        for address in asked[1:]:
            every = _intersect(every, quiet[address][0])
    if every:
        fields = {**quiet[asked[0]][1]}
        modules = ", ".join(str(a) for a in asked)
        fields.update(which=f"any module (modules {modules})", address="all")
        fields["silent_s"] = _silent_s(every[-1], timeline.end)
        evidence = {
            "modules": asked,
            "silent_s": float(fields["silent_s"]),
            "stretches": len(every),
        }
        limit = min(quiet[a][2] for a in asked)
        out.append(
            IntervalFinding(
                "CAN_CONTROLLER_NOT_POLLING",
                f"{timeline.bus}/controller",
                tuple(every),
                fields,
                evidence,
                limit,
            )
        )
    for address, (gaps, fields, limit) in quiet.items():
        # What is left beside the bus-wide stretches, when it lasted longer than the limit.
        own = [e for e in _subtract(gaps, every) if e.end is None or e.end - e.start > limit]
        if not own:
            continue
        last = own[-1]
        which = {"silent_s": _silent_s(last, timeline.end), "which": f"module {address}"}
        evidence = {
            "last_request": last.start,
            "limit_s": limit,
            "stretches": len(own),
            "silent_s": float(which["silent_s"]),
        }
        subject = module_subject(timeline.bus, address)
        out.append(
            IntervalFinding(
                "CAN_CONTROLLER_NOT_POLLING",
                subject,
                tuple(own),
                {**fields, **which},
                evidence,
                limit,
            )
        )
    return out


def _silent_s(episode: Episode, end: float | None) -> str:
    return f"{episode.duration(end) or 0.0:.1f}"


# -- windowed findings -----------------------------------------------------------------------


def _clusters(times: F64) -> list[Episode]:
    """Sorted event times as episodes: events less than :data:`WINDOW_S` apart are one."""
    if not times.size:
        return []
    cuts = np.flatnonzero(np.diff(times) > WINDOW_S) + 1
    firsts = times[np.concatenate(([0], cuts))].tolist()
    lasts = times[np.concatenate((cuts - 1, [times.size - 1]))].tolist()
    return [Episode(float(a), float(b)) for a, b in zip(firsts, lasts, strict=True)]


def _windowed(episodes: Sequence[Episode], end: float | None) -> tuple[Episode, ...]:
    """Merged within the window, and open when the window still holds the last evidence."""
    merged = settle(episodes, clear_after_s=WINDOW_S)
    return tuple(close_at(merged, end, WINDOW_S))


def _errors(
    mod: ModuleExchanges, subject: str, fields: dict[str, Any], end: float | None
) -> list[IntervalFinding]:
    episodes = _windowed(_clusters(mod.error_t), end)
    if not episodes:
        return []
    last = episodes[-1]
    rows = mod.error_t >= last.start
    codes, counts = np.unique(mod.error_code[rows], return_counts=True)
    errors = {
        str(c): {"count": n, "meaning": mod.error_meanings.get(c, "unknown code")}
        for c, n in zip(codes.tolist(), counts.tolist(), strict=True)
    }
    words = ", ".join(f"{int(c):#x} {e['meaning']} ({e['count']}x)" for c, e in errors.items())
    evidence = {"errors": errors, "error_replies": int(mod.error_t.size), "window_s": WINDOW_S}
    return [
        IntervalFinding(
            "CAN_MODULE_REJECTS_REQUESTS", subject, episodes, {**fields, "codes": words}, evidence
        )
    ]


def _answered_windows(mod: ModuleExchanges) -> tuple[F64, Any, Any]:  # (t, answered, lo)
    """Answered requests' times and, per answer, the first answer of its 10-s window
    (``t >= now - 10 s``, as the instant figures) and its position."""
    answered = ~np.isnan(mod.latency_s)
    t = mod.asked_t[answered]
    lo = np.searchsorted(t, t - WINDOW_S, side="left")
    return t, answered, lo


def _flag_runs(flags: Any) -> tuple[Any, Any]:
    """First and last index of each run of True."""
    edges = np.diff(np.concatenate(([0], flags.astype(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1


def _evidence_bounds(t: F64, evidence: Any, lo: Any, firsts: Any, lasts: Any) -> list[Episode]:
    """Each flagged run bounded by the evidence rows it read: the first in its first window
    to the last up to its last window's end."""
    pos = np.flatnonzero(evidence)
    if not pos.size or not firsts.size:
        return []
    a = pos[np.minimum(np.searchsorted(pos, lo[firsts], side="left"), pos.size - 1)]
    b = pos[np.maximum(np.searchsorted(pos, lasts, side="right") - 1, 0)]
    return [Episode(float(t[i]), float(t[j])) for i, j in zip(a.tolist(), b.tolist(), strict=True)]


def _conflicts(
    mod: ModuleExchanges,
    windows: tuple[F64, Any, Any],
    th: LivenessThresholds,
    subject: str,
    fields: dict[str, Any],
    end: float | None,
) -> list[IntervalFinding]:
    t, answered, lo = windows
    second = mod.second[answered]
    csum = np.concatenate(([0], np.cumsum(second)))
    in_window = csum[1:] - csum[lo]
    counted = np.arange(1, t.size + 1) - lo
    # A few extra answers happen when late answers bunch up; a twin answers most requests.
    flags = (in_window > 0) & (in_window >= np.maximum(2.0, th.conflict_min_share * counted))
    firsts, lasts = _flag_runs(flags)
    twins = _evidence_bounds(t, second > 0, lo, firsts, lasts)
    serials = _clusters(mod.serial_t[1:])  # the first serial heard is no change
    bits = _clusters(mod.dup_t)
    episodes = _windowed(twins + serials + bits, end)
    if not episodes:
        return []
    last = episodes[-1]
    stop = np.inf if last.end is None else last.end

    def within(times: F64) -> Any:
        return (times >= last.start) & (times <= stop)

    how, n_second = [], 0
    if any(e.overlaps(last) or e.start == last.start for e in twins):
        n_second = int(second[within(t)].sum())
        how.append(f"{n_second} second answers to one request")
    values = sorted(set(mod.serial[within(mod.serial_t)].tolist()))
    if len(values) > 1 or any(e.overlaps(last) or e.start == last.start for e in serials):
        how.append(f"{max(2, len(values))} serial numbers under one address")
    bit = bool(within(mod.dup_t).any())
    if bit:
        how.append("the module's duplicate-address bit is set")
    evidence = {"second_answers": n_second, "serials": values, "duplicate_address_bit": bit}
    return [
        IntervalFinding(
            "CAN_MODULE_ADDRESS_CONFLICT",
            subject,
            episodes,
            {**fields, "how": "; ".join(how) or "second answers"},
            evidence,
        )
    ]


def _slow(
    mod: ModuleExchanges,
    windows: tuple[F64, Any, Any],
    th: LivenessThresholds,
    subject: str,
    fields: dict[str, Any],
    run_slow: list[Episode],
    end: float | None,
) -> list[IntervalFinding]:
    t, answered, lo = windows
    latency = mod.latency_s[answered]
    limit = th.slow_reply_ms / 1000.0
    slow = latency > limit
    csum = np.concatenate(([0], np.cumsum(slow)))
    above = csum[1:] - csum[lo]
    counted = np.arange(1, t.size + 1) - lo
    # The median exceeds the limit when more than half the window is above it; with an
    # even count and exactly half above, the two middle values decide (computed each).
    flags = (counted >= th.slow_min_answers) & (2 * above > counted)
    for i in np.flatnonzero((counted >= th.slow_min_answers) & (2 * above == counted)).tolist():
        flags[i] = float(np.median(latency[lo[i] : i + 1])) > limit
    firsts, lasts = _flag_runs(flags)
    stretches = _evidence_bounds(t, slow, lo, firsts, lasts)
    episodes = settle([*_windowed(stretches, end), *run_slow])
    if not episodes:
        return []
    last = episodes[-1]
    stop = np.inf if last.end is None else last.end
    rows = (t >= last.start) & (t <= stop)
    if stretches and rows.any() and slow[rows].any():
        median = float(np.median(latency[rows]))
        median_ms = f"{median * 1000:.0f}"
        evidence: dict[str, Any] = {"latency_median_ms": round(median * 1000, 3)}
    else:
        median_ms = "more than one poll period"
        evidence = {"late_replies": int(np.count_nonzero(mod.late_t >= last.start))}
    evidence["answered"] = int(np.count_nonzero(rows))
    return [
        IntervalFinding(
            "CAN_MODULE_SLOW_REPLIES",
            subject,
            tuple(episodes),
            {**fields, "median_ms": median_ms, "limit_ms": f"{th.slow_reply_ms:g}"},
            evidence,
        )
    ]


# -- interval arithmetic ----------------------------------------------------------------------


def _end(e: Episode) -> float:
    return np.inf if e.end is None else e.end


def _subtract(episodes: Sequence[Episode], cut: Sequence[Episode]) -> list[Episode]:
    """``episodes`` minus the union of ``cut`` (both sorted by start)."""
    out: list[Episode] = []
    for ep in episodes:
        pieces = [(ep.start, _end(ep))]
        for c in cut:
            pieces = [
                part
                for a, b in pieces
                for part in ((a, min(b, c.start)), (max(a, _end(c)), b))
                if part[1] > part[0]
            ]
        out.extend(Episode(a, None if b == np.inf else b) for a, b in pieces)
    return out


def _intersect(a: Sequence[Episode], b: Sequence[Episode]) -> list[Episode]:
    out = []
    for x in a:
        for y in b:
            lo, hi = max(x.start, y.start), min(_end(x), _end(y))
            if hi > lo:
                out.append(Episode(lo, None if hi == np.inf else hi))
    return sorted(out, key=lambda e: e.start)
