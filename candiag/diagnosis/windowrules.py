"""Window rules: error classes, bus load, dropped frames and rising error counters, per second.

The instant rules (:func:`candiag.diagnosis.rules.error_frame_conditions`,
:func:`~candiag.diagnosis.rules.load_and_drop_conditions`) judge the last 60 s of a bus
report at the instants they are asked; here the same definitions are evaluated at *every*
second of the bus's per-second columns (:class:`~candiag.diagnosis.timeline.BusTimeline`)
in a few numpy passes (:func:`~candiag.diagnosis.episodes.rolling_sum`, searches), so a
burst that comes and goes between two looks is found, and bounded to the second.

The verdict at second ``t`` reads the window ``(t - 60, t]``, as the instant rule does:

* ``CAN_ERROR_FRAMES_UNCLASSIFIED``: error frames whose kind the format does not record;
* with at least ``error_frames_warning_60s`` error frames: ``CAN_ERR_TRX`` when there are
  transceiver errors or protocol errors of the bit0/bit1 types; ``CAN_ERR_ACK`` when ACK
  errors are at least as many as protocol errors; otherwise, protocol errors more than the
  transceiver's: ``CAN_WRONG_BITRATE`` when at least ``wrong_bitrate_min_bursts`` seconds
  held ``burst_errors_per_s`` protocol errors or more and at least
  ``wrong_bitrate_burst_share`` of them were in such bursts, else ``CAN_ERR_PHY``;
* ``CAN_LOAD_HIGH``: the mean load of the 10 s ending at ``t`` at least
  ``bus_load_warning`` (only when the bitrate is known: a load under an assumed bitrate is
  not a fact about the bus);
* ``CAN_FRAMES_DROPPED``: frames the host dropped in the window (live only);
* ``CAN_TEC_RISING``: the controller in error-warning while its counters rise (not on the
  way back from error-passive), exact to the error frames that showed it.

Episodes are bounded by the code's own evidence, not by the window: from the first to the
last second that holds it (ACK errors for ``CAN_ERR_ACK``, protocol errors for
``CAN_ERR_PHY``/``CAN_WRONG_BITRATE``, transceiver and bit0/bit1 errors for
``CAN_ERR_TRX``, seconds over the load threshold for ``CAN_LOAD_HIGH``...), counting a
second of evidence when the verdict held at it or within the window after it (the window
that proved the verdict saw it: the first burst of a wrong bitrate is part of its
episode).  Hysteresis, in time (docs/diagnosis.md, "Window rules"):

* evidence less than a window (60 s) after the previous is the same episode (the rule's
  window still saw the fault);
* an episode is over once its evidence has been absent for ``clear_after_s``; one whose
  last evidence lies closer to the end of the data stays open (nothing proves it ended).

Protocol errors explained by a wrong bitrate are not also a physical-layer episode: the
more specific verdict takes the seconds it covers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from candiag.diagnosis.engine import RuleBook
from candiag.diagnosis.episodes import Episode, rolling_sum, settle
from candiag.diagnosis.intervalrule import IntervalFinding
from candiag.diagnosis.timeline import BusTimeline
from candiag.health.errorframes import ERROR_CLASSES
from candiag.health.windows import PROTOCOL_TYPE_COLUMNS

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

#: The window the error thresholds are stated over (``error_frames_warning_60s``).
WINDOW_S = 60
#: The span of the load's rolling mean (``bus_load_warning`` is a 10-s load).
LOAD_SPAN_S = 10
ERROR_CODES = frozenset(
    {
        "CAN_ERROR_FRAMES_UNCLASSIFIED",
        "CAN_ERR_TRX",
        "CAN_ERR_ACK",
        "CAN_ERR_PHY",
        "CAN_WRONG_BITRATE",
    }
)
WINDOW_CODES = ERROR_CODES | {"CAN_LOAD_HIGH", "CAN_FRAMES_DROPPED", "CAN_TEC_RISING"}


@dataclass(frozen=True)
class _Verdict:
    """One code's verdict at each second of the axis and the seconds of its own evidence."""

    holds: Bools
    own: I64  # the code's evidence per second (frames, or 1 for a second over a threshold)
    window: int  # how far back a verdict's window reaches


def window_rules(book: RuleBook, timeline: BusTimeline) -> list[IntervalFinding]:
    """Every window rule over one bus's timeline."""
    out = _error_findings(book, timeline)
    out += _load_findings(book, timeline)
    out += _dropped_findings(book, timeline)
    out += _tec_rising(book, timeline)
    return out


# -- the per-second verdicts ---------------------------------------------------------------


def _column(timeline: BusTimeline, name: str) -> I64:
    column = timeline.columns.get(name)
    if column is None:
        return np.zeros(timeline.seconds.size, np.int64)
    return column


def _error_verdicts(book: RuleBook, timeline: BusTimeline) -> dict[str, _Verdict]:
    """The precedence of :func:`candiag.diagnosis.rules.error_frame_conditions`, per second."""
    seconds = timeline.seconds

    def col(name: str) -> I64:
        return _column(timeline, name)

    def roll(values: I64) -> F64:
        return rolling_sum(seconds, values, WINDOW_S)

    unclassified = col("errors_unclassified")
    trx_own = col("errors_transceiver") + col("protocol_bit0") + col("protocol_bit1")
    ack_own, protocol_own = col("errors_ack"), col("errors_protocol")
    total, trx = roll(col("frames_error")), roll(trx_own)
    ack, protocol = roll(ack_own), roll(protocol_own)
    burst = protocol_own >= book.t("burst_errors_per_s")
    burst_seconds = roll(burst.astype(np.int64))
    share = roll(np.where(burst, protocol_own, 0)) / np.maximum(protocol, 1.0)
    enough = total >= book.t("error_frames_warning_60s")
    is_ack = enough & (ack > 0) & (ack >= protocol)
    physical = enough & ~is_ack & (protocol > 0) & (protocol > trx)
    wrong_rate = (
        physical
        & (burst_seconds >= book.t("wrong_bitrate_min_bursts"))
        & (share >= book.t("wrong_bitrate_burst_share"))
    )
    return {
        "CAN_ERROR_FRAMES_UNCLASSIFIED": _Verdict(roll(unclassified) > 0, unclassified, WINDOW_S),
        "CAN_ERR_TRX": _Verdict(enough & (trx > 0), trx_own, WINDOW_S),
        "CAN_ERR_ACK": _Verdict(is_ack, ack_own, WINDOW_S),
        "CAN_WRONG_BITRATE": _Verdict(wrong_rate, protocol_own, WINDOW_S),
        "CAN_ERR_PHY": _Verdict(physical & ~wrong_rate, protocol_own, WINDOW_S),
    }


def _evidence_seconds(seconds: I64, verdict: _Verdict) -> I64:
    """Seconds of the code's own evidence that a window with a true verdict saw."""
    held = seconds[verdict.holds]
    candidates = seconds[verdict.own > 0]
    if held.size == 0 or candidates.size == 0:
        return np.zeros(0, np.int64)
    # The first second at or after each candidate where the verdict held.
    k = np.searchsorted(held, candidates, side="left")
    inside = k < held.size
    seen = np.zeros(candidates.size, np.bool_)
    seen[inside] = held[k[inside]] - candidates[inside] < verdict.window
    out: I64 = candidates[seen]
    return out


def _episodes(book: RuleBook, evidence: I64, end: float | None) -> list[Episode]:
    """Evidence seconds as episodes: the hysteresis of the module docstring."""
    if evidence.size == 0:
        return []
    cuts = np.flatnonzero(np.diff(evidence) >= WINDOW_S) + 1
    firsts = evidence[np.concatenate(([0], cuts))].tolist()
    lasts = (evidence[np.concatenate((cuts - 1, [evidence.size - 1]))] + 1).tolist()
    episodes = [Episode(float(a), float(b)) for a, b in zip(firsts, lasts, strict=True)]
    last = episodes[-1]
    if end is None or end - last.end_or(0.0) < book.clear_after_s:
        episodes[-1] = Episode(last.start, None)  # not absent long enough to call it over
    return settle(episodes, raise_after_s=book.raise_after_s)


def _inside(seconds: I64, episodes: Sequence[Episode]) -> Bools:
    """Which of these seconds lie within one of the episodes (sorted, not overlapping)."""
    if not episodes:
        return np.zeros(seconds.size, np.bool_)
    starts = np.array([e.start for e in episodes], np.float64)
    ends = np.array([e.end_or(np.inf) for e in episodes], np.float64)
    k = np.searchsorted(starts, seconds, side="right") - 1  # the last episode started
    inside: Bools = (k >= 0) & (seconds < ends[np.maximum(k, 0)])
    return inside


def _proof_s(seconds: I64, verdict: _Verdict, episodes: Sequence[Episode]) -> float:
    """How long after the first episode's start its verdict first held: the end of the
    first second at or after the start where it did (its window was then complete)."""
    held = seconds[verdict.holds]
    k = int(np.searchsorted(held, episodes[0].start, side="left"))
    if k == held.size:
        return 0.0
    return float(held[k]) + 1.0 - episodes[0].start


def _worst_second(seconds: I64, score: F64, episodes: Sequence[Episode]) -> int | None:
    """Index of the second with the highest ``score`` in the last episode."""
    last = episodes[-1]
    rows = np.flatnonzero((seconds >= last.start) & (seconds < last.end_or(np.inf)))
    if rows.size == 0:
        return None
    return int(rows[int(np.argmax(score[rows]))])


# -- error classes -------------------------------------------------------------------------


def _base(timeline: BusTimeline) -> dict[str, Any]:
    """``bus``, ``bitrate`` and ``bus_bitrate`` as :func:`rules._bitrate_fields` gives them."""
    if not timeline.bitrate:
        return {
            "bus": timeline.bus,
            "bitrate": "unknown",
            "bus_bitrate": "the bitrate the other nodes use (candiag does not know this "
            "bus's bitrate: give --bitrate, or read it from the charger's documentation)",
        }
    bitrate = timeline.bitrate
    return {
        "bus": timeline.bus,
        "bitrate": bitrate,
        "bus_bitrate": f"the bus bitrate ({int(bitrate):,} bit/s)",
    }


def _error_findings(book: RuleBook, timeline: BusTimeline) -> list[IntervalFinding]:
    seconds = timeline.seconds
    if not _column(timeline, "frames_error").any():
        return []  # the usual bus: no error frame, nothing to judge (the live loop's case)
    verdicts = _error_verdicts(book, timeline)
    found: dict[str, list[Episode]] = {}
    for code in ("CAN_WRONG_BITRATE", "CAN_ERR_PHY", "CAN_ERR_ACK", "CAN_ERR_TRX"):
        evidence = _evidence_seconds(seconds, verdicts[code])
        if code == "CAN_ERR_PHY" and found.get("CAN_WRONG_BITRATE"):
            evidence = evidence[~_inside(evidence, found["CAN_WRONG_BITRATE"])]
        found[code] = _episodes(book, evidence, timeline.end)
    code = "CAN_ERROR_FRAMES_UNCLASSIFIED"
    found[code] = _episodes(book, _evidence_seconds(seconds, verdicts[code]), timeline.end)
    out = []
    for code, episodes in found.items():
        if episodes:
            out.append(_error_finding(book, timeline, code, verdicts[code], episodes))
    return out


def _error_finding(
    book: RuleBook,
    timeline: BusTimeline,
    code: str,
    verdict: _Verdict,
    episodes: list[Episode],
) -> IntervalFinding:
    """The finding with the 60-s figures of its last episode's worst second (the keys the
    instant rule gave), the second, and the code's evidence over all its episodes."""
    seconds = timeline.seconds
    i = _worst_second(seconds, rolling_sum(seconds, verdict.own, WINDOW_S), episodes)
    fields = _base(timeline)
    evidence: dict[str, Any] = {}
    if i is not None:
        at = int(seconds[i])
        window = (seconds > at - WINDOW_S) & (seconds <= at)

        def total(name: str) -> int:
            return int(_column(timeline, name)[window].sum())

        by_class = {c: total(f"errors_{c}") for c in ERROR_CLASSES}
        types = {t: total(f"protocol_{t}") for t in PROTOCOL_TYPE_COLUMNS}
        evidence.update(
            error_frames_60s=total("frames_error"),
            by_class_60s={k: v for k, v in by_class.items() if v},
            protocol_type_60s={k: v for k, v in types.items() if v},
        )
        if code == "CAN_ERROR_FRAMES_UNCLASSIFIED":
            evidence["unclassified_60s"] = by_class["unclassified"]
        if code in ("CAN_WRONG_BITRATE", "CAN_ERR_PHY"):
            protocol = _column(timeline, "errors_protocol")[window]
            burst = protocol >= book.t("burst_errors_per_s")
            in_bursts = float(protocol[burst].sum()) / max(1, int(protocol.sum()))
            evidence.update(burst_seconds_60s=int(burst.sum()), share_in_bursts=round(in_bursts, 3))
        evidence["worst_second"] = float(at)
    evidence["episode_error_frames"] = _episode_total(seconds, verdict.own, episodes)
    if code == "CAN_ERROR_FRAMES_UNCLASSIFIED":
        fields["count"] = evidence["episode_error_frames"]
    proof = _proof_s(seconds, verdict, episodes)
    return IntervalFinding(code, timeline.bus, tuple(episodes), fields, evidence, proof)


def _episode_total(seconds: I64, values: I64, episodes: Sequence[Episode]) -> int:
    return int(values[_inside(seconds, episodes)].sum())


# -- load and dropped frames ----------------------------------------------------------------


def _load_findings(book: RuleBook, timeline: BusTimeline) -> list[IntervalFinding]:
    load = timeline.load_ratio
    seconds = timeline.seconds
    if load is None or timeline.bitrate is None or seconds.size == 0:
        return []  # an assumed bitrate's load is not a fact about the bus
    threshold = book.t("bus_load_warning")
    mean_10s = rolling_sum(seconds, load, LOAD_SPAN_S) / LOAD_SPAN_S
    verdict = _Verdict(mean_10s >= threshold, (load >= threshold).astype(np.int64), LOAD_SPAN_S)
    episodes = _episodes(book, _evidence_seconds(seconds, verdict), timeline.end)
    if not episodes:
        return []
    worst = float(mean_10s[_inside(seconds, episodes)].max())
    fields = {**_base(timeline), "load": f"{worst:.0%}"}
    evidence = {
        "load_ratio_10s": round(worst, 4),
        "seconds_over": _episode_total(seconds, verdict.own, episodes),
    }
    proof = _proof_s(seconds, verdict, episodes)
    return [
        IntervalFinding("CAN_LOAD_HIGH", timeline.bus, tuple(episodes), fields, evidence, proof)
    ]


def _dropped_findings(book: RuleBook, timeline: BusTimeline) -> list[IntervalFinding]:
    seconds = timeline.seconds
    dropped = _column(timeline, "frames_dropped")
    if seconds.size == 0 or not dropped.any():
        return []
    verdict = _Verdict(rolling_sum(seconds, dropped, WINDOW_S) > 0, dropped, WINDOW_S)
    episodes = _episodes(book, _evidence_seconds(seconds, verdict), timeline.end)
    if not episodes:
        return []
    total = _episode_total(seconds, dropped, episodes)
    last = episodes[-1]
    in_last = _episode_total(seconds, dropped, [last])
    fields = {**_base(timeline), "dropped": total}
    recent = rolling_sum(seconds, dropped, WINDOW_S)
    i = _worst_second(seconds, recent, episodes)
    evidence = {
        "dropped_recent": 0 if i is None else int(recent[i]),
        "dropped": total,
        "dropped_last_episode": in_last,
    }
    proof = _proof_s(seconds, verdict, episodes)
    code = "CAN_FRAMES_DROPPED"
    return [IntervalFinding(code, timeline.bus, tuple(episodes), fields, evidence, proof)]


# -- error counters rising ------------------------------------------------------------------


def rising_intervals(
    stays: Sequence[tuple[float, float | None]], changes: Sequence[tuple[float, bool]]
) -> list[Episode]:
    """The parts of the ``stays`` during which the counters were not falling.

    ``changes``: each change of direction (instant, falling), oldest first; before the
    first the counters count as rising (a bus starts error-active).
    """
    times = np.array([t for t, _ in changes], np.float64)
    falling = np.array([f for _, f in changes], np.bool_)
    out: list[Episode] = []
    for start, end in stays:
        stop = np.inf if end is None else end
        # The direction at the stay's start, then every change inside it.
        k = int(np.searchsorted(times, start, side="right"))
        state = bool(falling[k - 1]) if k else False
        inner = (times > start) & (times < stop)
        edges = [start, *times[inner].tolist(), stop]
        states = [state, *falling[inner].tolist()]
        for a, b, down in zip(edges[:-1], edges[1:], states, strict=True):
            if not down and b > a:
                out.append(Episode(a, None if b == np.inf else b))
    return settle(out)


def _tec_rising(book: RuleBook, timeline: BusTimeline) -> list[IntervalFinding]:
    stays = timeline.states.get("error_warning", ())
    episodes = rising_intervals(stays, timeline.trend_changes)
    if not episodes:
        return []
    evidence = {
        "state": "error_warning",
        "tec": timeline.tec,
        "rec": timeline.rec,
        "stays": len(stays),
    }
    return [
        IntervalFinding("CAN_TEC_RISING", timeline.bus, tuple(episodes), _base(timeline), evidence)
    ]
