"""Bitrate knowledge: the standard CAN bitrates, candiag's one default, inferring the nominal
bitrate of a capture from its timestamps, and choosing the bitrate an analysis uses.

How candiag knows a bus's bitrate, best first (docs/bitrate.md): a ``--bitrate`` flag, the
recording's own metadata (:mod:`candiag.capture.metadata`), an explicit config key, an
inference from the capture's timestamps (this module), and otherwise :data:`DEFAULT_BITRATE`,
*assumed* and said to be.  :func:`choose_bitrate` applies that order.

The inference rule (docs/bitrate.md has the derivation and its limits).  Two frames of one
bus cannot be closer on the wire than the second one is long: for consecutive frames
``i-1, i`` on one channel, ``Δt >= bits / R``, with ``bits`` the exact bit count of
:func:`candiag.health.busload.frame_bits` (stuffing and the 3-bit interframe space
included).  SocketCAN stamps a received frame when it is complete (frame *end*), then the
bound is ``bits(i) / R``; hardware that stamps the start of frame gives ``bits(i-1) / R``.
The lower bound on ``R`` uses ``min`` of the two, so it holds under either convention:

* a pair is *impossible* at a rate ``R`` when ``Δt < min_bits (1 - rel) / R - tol``
  (``tol``: timestamp jitter, ``rel``: clock and stamping-point tolerance);
* the **candidate** is the lowest standard rate at which (almost) no pair is impossible;
  the bus runs at that rate or faster;
* it is **claimed** only with evidence that it is not faster: at least
  :data:`MIN_EVIDENCE_PAIRS` pairs packed back to back at exactly its frame time (under the
  end or the start convention) that the next lower standard rate could not carry, nothing
  closer than that frame time under the same convention, and a sharp edge (few pairs in
  the band just above the frame time compared with the pairs on it).  Idle gaps that
  happen to match a slower rate's frame time spread evenly over that band; back-to-back
  frames pile up on the edge.

Otherwise the result is ``None`` with the reason: too sparse, bunched or too coarse
timestamps (frames closer than 1 Mbit/s allows, ``Δt = 0``, 0.1 ms grids), or CAN FD
frames with bit-rate switch dominating (their data phase runs at an unknown rate).  Only
classic frames form pairs; error frames and CAN FD frames are skipped (an FD frame's bit
count is an estimate), which only lengthens ``Δt`` and keeps every bound valid.

:class:`BitrateEvidence` is streaming and vectorized: per chunk, every pair's thresholds
are turned into index ranges over the ten standard rates with ``searchsorted`` and counted
with ``bincount``; per channel only a few counters and the last frame are carried.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import numpy.typing as npt

from candiag.health.busload import frame_bits
from candiag.health.defaults import DEFAULT_BITRATE as DEFAULT_BITRATE  # re-exported
from candiag.ingest.frames import FLAG_BRS, FLAG_ERROR, FLAG_FD, FrameBatch

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Nominal bitrates candiag treats as standard (docs/bitrate.md cites the adapter tables).
STANDARD_BITRATES: tuple[int, ...] = (
    10_000,
    20_000,
    50_000,
    83_333,
    100_000,
    125_000,
    250_000,
    500_000,
    800_000,
    1_000_000,
)

#: Timestamp accuracy levels tried, as the jitter allowed on a gap (two timestamps): hardware
#: timestamps (µs resolution), good software timestamps, and ±25 µs software timestamps.
#: A claim at one level must hold there on its own; claims at several levels must agree.
TOLERANCE_LEVELS_S = (3e-6, 15e-6, 50e-6)
#: Relative slack on a frame time: bit-clock tolerance and where in its last bits a frame is stamped.
RELATIVE_TOLERANCE = 0.02
#: Back-to-back pairs needed at a rate's frame time before it is claimed.
MIN_EVIDENCE_PAIRS = 20
#: Pairs closer than a rate allows that are forgiven as outliers: this share of the evidence,
#: and at least MIN_OUTLIERS.
OUTLIER_SHARE = 0.02
MIN_OUTLIERS = 2
#: Pairs on the frame time must outnumber those in the equally wide band just above by this.
SHARPNESS = 3.0
#: Frame lengths must explain the gaps at the frame time: the variance of ``gap - bits / R``
#: must be at most this share of the variance of the gaps (or within the timestamp accuracy).
TRACKING = 0.5
#: Timestamp grids (USB frames and microframes, 0.1 ms log formats) too coarse to measure
#: frame times on; a capture has one when this share of its timestamps sit on it.
COARSE_GRIDS_S = (1e-3, 5e-4, 2.5e-4, 1.25e-4, 1e-4)
GRID_SHARE = 0.5
_GRID_SLACK = 0.04  # within 4 % of the grid step from a multiple (chance: 8 %)
_MIN_GRID_STAMPS = 50
_DENSEST_KEPT = 64

TimestampConvention = Literal["frame end", "frame start"]
_CONVENTIONS: tuple[TimestampConvention, TimestampConvention] = ("frame end", "frame start")

_RATES = np.array(STANDARD_BITRATES, np.float64)
# The next lower rate of each standard rate (below the lowest: half of it).
_LOWER = np.concatenate([[STANDARD_BITRATES[0] / 2], _RATES[:-1]])
_K = len(STANDARD_BITRATES)
_L = len(TOLERANCE_LEVELS_S)
# Sums kept over the pairs at a rate's frame time: gap, gap², bits, bits², gap·bits.
_SUMS = 5


def rate_text(bitrate: float) -> str:
    """``125000 bit/s`` (``83333 bit/s``)."""
    return f"{round(bitrate)} bit/s"


@dataclass(frozen=True)
class BitrateInference:
    """What the timestamps of one channel say about its nominal bitrate.

    ``bitrate`` is a standard rate only when claimed with evidence, else ``None``; ``reason``
    says why in words either way.  ``candidate_bitrate`` is the lowest standard rate the
    frames fit (the bus runs at least that fast), ``None`` when none fits or nothing was
    seen.  ``lower_bound_bps`` is the densest packing, ``bits / Δt`` of the closest pair
    after forgiving the outliers (0.0 without pairs).  ``evidence_pairs``: back-to-back
    pairs at the candidate's frame time that the next lower rate could not carry.
    ``too_close_pairs``: pairs closer than even 1 Mbit/s allows (``equal_timestamps`` of them
    with ``Δt <= 0``).  ``timestamps``: the convention the evidence matched.
    """

    bitrate: int | None
    reason: str
    channel: str = ""
    pairs: int = 0
    lower_bound_bps: float = 0.0
    candidate_bitrate: int | None = None
    evidence_pairs: int = 0
    too_close_pairs: int = 0
    equal_timestamps: int = 0
    frames: int = 0
    fd_brs_frames: int = 0
    timestamps: TimestampConvention | None = None

    @property
    def inferred(self) -> bool:
        return self.bitrate is not None


@dataclass
class _Channel:
    """Counters of one channel, carried across chunks.

    Per tolerance level, convention (end, start) and standard rate: pairs below the rate's
    frame time, at it (``match``), at it and decisive (the next lower rate could not carry
    them and the next higher rate's frame time is shorter), in the band just above, and the
    sums over the matching pairs for the tracking test.
    """

    last_time: float = math.nan
    last_bits: int = 0
    frames: int = 0
    fd_frames: int = 0
    brs_frames: int = 0
    pairs: int = 0
    equal: int = 0
    first_time: float = math.nan
    stamps: int = 0  # timestamps after the first (checked against the grids)
    on_grid: I64 = field(default_factory=lambda: np.zeros(len(COARSE_GRIDS_S), np.int64))
    impossible: I64 = field(default_factory=lambda: np.zeros((_L, _K), np.int64))
    below: I64 = field(default_factory=lambda: np.zeros((_L, 2, _K), np.int64))
    match: I64 = field(default_factory=lambda: np.zeros((_L, 2, _K), np.int64))
    decisive: I64 = field(default_factory=lambda: np.zeros((_L, 2, _K), np.int64))
    above: I64 = field(default_factory=lambda: np.zeros((_L, 2, _K), np.int64))
    sums: F64 = field(default_factory=lambda: np.zeros((_L, 2, _K, _SUMS), np.float64))
    densest: F64 = field(default_factory=lambda: np.empty(0, np.float64))


class BitrateEvidence:
    """Streaming bitrate inference per channel: :meth:`update` per chunk, then :meth:`result`.

    Chunks must come in time order per channel (a gap that goes backwards counts as
    impossible); frames within a chunk are sorted per channel here.  Channels are told
    apart by name, so chunks with different channel tables combine correctly.
    """

    def __init__(self) -> None:
        self._channels: dict[str, _Channel] = {}

    @property
    def channels(self) -> list[str]:
        """Channel names seen so far, in order of appearance."""
        return list(self._channels)

    def update(self, batch: FrameBatch) -> None:
        """Add a chunk of frames (any kinds; only classic frames form pairs)."""
        if not len(batch):
            return
        flags = batch.flags
        error = (flags & FLAG_ERROR) != 0
        fd = ((flags & FLAG_FD) != 0) & ~error
        classic = ~error & ~fd
        brs = fd & ((flags & FLAG_BRS) != 0)
        names = batch.channels or [""]
        present = np.unique(batch.channel[~error])
        if not present.size:
            return
        bits = np.zeros(len(batch), np.int64)
        rows = np.flatnonzero(classic)
        if rows.size:
            bits[rows] = frame_bits(batch.take(rows))[0]
        for index in present.tolist():
            name = names[index] if 0 <= index < len(names) else str(index)
            state = self._channels.setdefault(name, _Channel())
            mine = batch.channel == index
            state.fd_frames += int(np.count_nonzero(mine & fd))
            state.brs_frames += int(np.count_nonzero(mine & brs))
            picked = np.flatnonzero(mine & classic)
            if picked.size:
                _add_frames(state, batch.timestamp[picked], bits[picked])

    def result(self, channel: str | None = None) -> BitrateInference:
        """The inference for ``channel`` (``None``: the only channel; an error if several)."""
        if channel is None:
            if len(self._channels) > 1:
                raise ValueError(
                    f"several channels ({', '.join(self._channels)}): name the channel"
                )
            channel = next(iter(self._channels), "")
        state = self._channels.get(channel)
        if state is None:
            return BitrateInference(
                None, "no frames: nothing to infer the bitrate from", channel=channel
            )
        return _judge(channel, state)

    def results(self) -> dict[str, BitrateInference]:
        """The inference of every channel seen, by channel name."""
        return {name: _judge(name, state) for name, state in self._channels.items()}


def infer_bitrate(batch: FrameBatch, channel: str | None = None) -> BitrateInference:
    """One-shot :class:`BitrateEvidence` over a whole batch."""
    evidence = BitrateEvidence()
    evidence.update(batch)
    return evidence.result(channel)


# --------------------------------------------------------------------------------------------
# Counting (vectorized per chunk)
# --------------------------------------------------------------------------------------------
def _add_frames(state: _Channel, times: F64, bits: I64) -> None:
    if times.size > 1 and np.any(np.diff(times) < 0):
        order = np.argsort(times, kind="stable")
        times, bits = times[order], bits[order]
    if math.isnan(state.last_time):
        t_all, b_all = times, bits
    else:
        t_all = np.concatenate([[state.last_time], times])
        b_all = np.concatenate([[state.last_bits], bits])
    state.frames += int(times.size)
    _count_grid(state, times)
    state.last_time, state.last_bits = float(times[-1]), int(bits[-1])
    if t_all.size < 2:
        return
    gap = np.diff(t_all)
    _count_pairs(state, gap, b_all[1:].astype(np.float64), b_all[:-1].astype(np.float64))


def _count_grid(state: _Channel, times: F64) -> None:
    """Count timestamps sitting on each coarse grid, relative to the channel's first one.

    Timestamps, not gaps: at low rates back-to-back gaps are whole numbers of bit times
    (100 µs at 10 kbit/s) whatever the timestamp resolution, while the frames that start a
    busy period after idle time fall anywhere unless the clock itself is coarse.
    """
    if math.isnan(state.first_time):
        state.first_time = float(times[0])
        times = times[1:]
    offsets = times - state.first_time
    state.stamps += int(offsets.size)
    for g, step in enumerate(COARSE_GRIDS_S):
        units = offsets / step
        state.on_grid[g] += int(np.count_nonzero(np.abs(units - np.rint(units)) <= _GRID_SLACK))


def _rate_index(thresholds: F64, rates: F64, side: Literal["left", "right"]) -> I64:
    index: I64 = np.searchsorted(rates, thresholds, side=side).astype(np.int64)
    return index


def _over(numerator: F64, denominator: F64) -> F64:
    """``numerator / denominator``, +inf where the denominator is not positive."""
    out = np.full(numerator.shape, np.inf)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _below(stop: I64) -> I64:
    """Per rate index 0..K-1: how many of the ranges ``[0, stop)`` cover it."""
    covered: I64 = stop.size - np.cumsum(np.bincount(stop, minlength=_K + 1))[:_K]
    return covered


def _ranges(start: I64, stop: I64, weights: F64 | None = None) -> F64:
    """Per rate index 0..K-1: how many ranges ``[start, stop)`` cover it (or their weights)."""
    stop = np.maximum(stop, start)
    counts = np.bincount(start, weights, minlength=_K + 1) - np.bincount(
        stop, weights, minlength=_K + 1
    )
    covered: F64 = np.cumsum(counts)[:_K]
    return covered


def _count_pairs(state: _Channel, gap: F64, bits_end: F64, bits_start: F64) -> None:
    """Add the pairs with gaps ``gap`` whose frames are ``bits_start`` then ``bits_end`` long."""
    rel = RELATIVE_TOLERANCE
    state.pairs += int(gap.size)
    state.equal += int(np.count_nonzero(gap <= 0))
    positive = gap > 0
    gaps = gap[positive]
    least = np.minimum(bits_end, bits_start)
    if gaps.size:
        keep = np.concatenate([state.densest, least[positive] / gaps])
        if keep.size > _DENSEST_KEPT:
            keep = np.partition(keep, keep.size - _DENSEST_KEPT)[-_DENSEST_KEPT:]
        state.densest = keep
    for level, tol in enumerate(TOLERANCE_LEVELS_S):
        # Impossible at R  <=>  gap < least (1 - rel) / R - tol  <=>  R < least (1 - rel) / (gap + tol).
        r_impossible = _over(least * (1 - rel), gap + tol)
        state.impossible[level] += _below(_rate_index(r_impossible, _RATES, "left"))
        lower_impossible = _rate_index(r_impossible, _LOWER, "left")  # k: R_(k-1) impossible
        for c, own in enumerate((bits_end, bits_start)):
            _count_convention(state, level, c, tol, gap, own, lower_impossible)


def _count_convention(
    state: _Channel,
    level: int,
    c: int,
    tol: float,
    gap: F64,
    own: F64,
    lower_impossible: I64,
) -> None:
    """The counts of one tolerance level and timestamp convention (``own``: the bits it uses)."""
    rel = RELATIVE_TOLERANCE
    # Below R's frame time  <=>  R < own (1 - rel) / (gap + tol): k < first.
    first = _rate_index(_over(own * (1 - rel), gap + tol), _RATES, "left")
    # At it: k >= first and (gap <= tol or R <= own (1 + rel) / (gap - tol)): k < past.
    past = _rate_index(_over(own * (1 + rel), gap - tol), _RATES, "right")
    # The band above, as wide again: up to own (1 + 3 rel) / R + 3 tol.
    band_end = _rate_index(_over(own * (1 + 3 * rel), gap - 3 * tol), _RATES, "right")
    state.below[level, c] += _below(first)
    state.above[level, c] += _ranges(past, band_end).astype(np.int64)
    # Only pairs at some rate's frame time count further (idle gaps mostly are not).
    at = np.flatnonzero(first < past)
    first, past, gap, own = first[at], past[at], gap[at], own[at]
    state.match[level, c] += _ranges(first, past).astype(np.int64)
    # Decisive at k: at R_k's frame time, too close for R_(k-1), and past R_(k+1)'s frame
    # time, so only k = past - 1 can be the one.
    top = past - 1
    decisive = top < lower_impossible[at]
    state.decisive[level, c] += np.bincount(top[decisive], minlength=_K)[:_K]
    terms = (gap, gap * gap, own, own * own, gap * own)
    for j, term in enumerate(terms):
        state.sums[level, c, :, j] += _ranges(first, past, term)


# --------------------------------------------------------------------------------------------
# Judging
# --------------------------------------------------------------------------------------------
def _allowance(evidence: int) -> int:
    return max(MIN_OUTLIERS, int(OUTLIER_SHARE * evidence))


def _judge(channel: str, s: _Channel) -> BitrateInference:
    seen = BitrateInference(
        None,
        "",
        channel=channel,
        pairs=s.pairs,
        frames=s.frames,
        fd_brs_frames=s.brs_frames,
        too_close_pairs=int(s.impossible[-1, -1]),
        equal_timestamps=s.equal,
    )
    if s.brs_frames and s.brs_frames >= s.frames:
        return replace(
            seen,
            reason=f"{s.brs_frames} CAN FD frames with bit-rate switch against {s.frames} "
            "classic frames: their data phase runs at an unknown data bitrate, so frame times "
            "do not tell the nominal bitrate",
        )
    if s.pairs == 0:
        what = "no classic CAN frames" if not s.frames else "a single classic CAN frame"
        return replace(seen, reason=f"{what}: nothing to infer the bitrate from")
    if s.stamps >= _MIN_GRID_STAMPS:
        for g, step in enumerate(COARSE_GRIDS_S):
            if s.on_grid[g] >= GRID_SHARE * s.stamps:
                return replace(
                    seen,
                    reason=f"{s.on_grid[g]} of {s.stamps + 1} timestamps sit on a "
                    f"{step * 1e3:g} ms grid: too coarse (or stamped per USB frame) to "
                    "measure frame times",
                )
    verdicts = [_judge_level(s, level, seen) for level in range(_L)]
    claimed = {v.bitrate for v in verdicts if v.bitrate is not None}
    if len(claimed) == 1:
        return next(v for v in verdicts if v.bitrate is not None)
    if claimed:
        rates = " or ".join(rate_text(r) for r in sorted(claimed))
        return replace(
            verdicts[-1],
            bitrate=None,
            timestamps=None,
            reason=f"not inferable: depending on how precise the timestamps are, the frames "
            f"fit {rates}",
        )
    return verdicts[-1]  # the verdict that forgives the most timestamp jitter


def _judge_level(s: _Channel, level: int, seen: BitrateInference) -> BitrateInference:
    """The verdict of one tolerance level: the lowest rate the pairs fit, claimed with evidence."""
    for k in range(_K):
        if s.impossible[level, k] <= _allowance(int(s.decisive[level, :, k].max())):
            return _claim(s, level, k, seen)
    equal = f" ({s.equal} with equal timestamps)" if s.equal else ""
    return replace(
        seen,
        lower_bound_bps=_densest(s, 0),
        reason=f"{seen.too_close_pairs} of {s.pairs} consecutive frames are closer together "
        f"than even {rate_text(STANDARD_BITRATES[-1])} allows{equal}: the timestamps are "
        "bunched (host or USB buffering) or the frames are not from one bus",
    )


def _densest(s: _Channel, forgiven: int) -> float:
    if not s.densest.size:
        return 0.0
    ordered = np.sort(s.densest, kind="stable")[::-1]
    return float(ordered[min(forgiven, ordered.size - 1)])


def _tracks(sums: F64, count: int, rate: float, tol: float) -> bool:
    """Do the frame lengths explain the gaps at the frame time (``gap ~ bits / rate``)?

    Back-to-back frames give ``gap = bits / rate + jitter``: the residual varies far less
    than the gaps and averages about zero.  Gaps that do not depend on the frames (a
    timestamp grid, a sender's fixed spacing, idle time) leave a residual that varies as
    much as the gaps or more, or is offset.
    """
    if count < 2:
        return False
    s_gap, s_gap2, s_bits, s_bits2, s_cross = (float(v) for v in sums / count)
    mean_x = s_bits / rate
    mean_r = s_gap - mean_x
    var_gap = max(s_gap2 - s_gap * s_gap, 0.0)
    var_x = max(s_bits2 / rate**2 - mean_x * mean_x, 0.0)
    cov = s_cross / rate - s_gap * mean_x
    var_r = max(var_gap - 2 * cov + var_x, 0.0)
    if abs(mean_r) > tol / 2 + RELATIVE_TOLERANCE * mean_x:
        return False
    return var_r <= TRACKING * var_gap or var_r <= (tol / 4) ** 2


def _claim(s: _Channel, level: int, k: int, seen: BitrateInference) -> BitrateInference:
    """Claim candidate ``k`` (the lowest rate the pairs fit at ``level``) if the evidence holds."""
    rate = STANDARD_BITRATES[k]
    tol = TOLERANCE_LEVELS_S[level]
    c = int(np.argmax(s.decisive[level, :, k]))
    evidence = int(s.decisive[level, c, k])
    matched = int(s.match[level, c, k])
    above, below = int(s.above[level, c, k]), int(s.below[level, c, k])
    lower = rate_text(_LOWER[k])
    seen = replace(
        seen,
        candidate_bitrate=rate,
        evidence_pairs=evidence,
        lower_bound_bps=_densest(s, min(int(s.impossible[level, k]), _DENSEST_KEPT - 1)),
    )
    at_least = f"the frames fit {rate_text(rate)} or faster"
    if evidence < MIN_EVIDENCE_PAIRS:
        reason = (
            f"not inferable: {at_least}, but only {evidence} back-to-back pairs sit at its "
            f"frame time where {lower} could not carry them ({MIN_EVIDENCE_PAIRS} needed): "
            "too little dense traffic"
        )
    elif below > _allowance(evidence):
        reason = (
            f"not inferable: {evidence} pairs sit at the {rate_text(rate)} frame time, but "
            f"{below} are closer than that under the same timestamp convention: the "
            "timestamps are not consistent"
        )
    elif above * SHARPNESS > matched:
        reason = (
            f"not inferable: {at_least}; {matched} pairs sit at its frame time but {above} "
            "just above it: no clear packing edge (idle gaps, not back-to-back frames)"
        )
    elif not _tracks(s.sums[level, c, k], matched, rate, tol):
        reason = (
            f"not inferable: {at_least}; {matched} pairs sit near its frame time, but their "
            "gaps do not follow the frames' lengths (timestamps on a grid or a fixed "
            "sending pace, not back-to-back frames)"
        )
    else:
        return replace(
            seen,
            bitrate=rate,
            timestamps=_CONVENTIONS[c],
            reason=f"inferred from the timestamps: {evidence} back-to-back frame pairs sit at "
            f"the {rate_text(rate)} frame time ({_CONVENTIONS[c]} timestamps), where {lower} "
            "could not carry them, and no pair is closer",
        )
    return replace(seen, reason=reason)


# --------------------------------------------------------------------------------------------
# Choosing the bitrate an analysis uses
# --------------------------------------------------------------------------------------------
BitrateSource = Literal["flag", "recording", "config", "inferred", "assumed"]


@dataclass(frozen=True)
class BitrateChoice:
    """The bitrate an analysis uses, where it comes from, and in words why.

    ``source`` is ``"assumed"`` only when nothing told candiag the rate: then nothing
    bitrate-specific may be said to the user (no "set the bitrate to ..." instruction).
    ``notes`` lists disagreements between sources (e.g. ``--bitrate`` against the recording).
    """

    bitrate: int
    source: BitrateSource
    detail: str
    notes: tuple[str, ...] = ()

    @property
    def known(self) -> bool:
        """True unless the bitrate is an assumption."""
        return self.source != "assumed"


def choose_bitrate(
    *,
    flag: int | None = None,
    recorded: int | None = None,
    config: int | None = None,
    inference: BitrateInference | None = None,
    default: int = DEFAULT_BITRATE,
) -> BitrateChoice:
    """Pick the bitrate: ``--bitrate``, then the recording's metadata, then an explicit config
    key, then the inference, else ``default`` (assumed).  ``config`` must be ``None`` unless
    the key is in the file (a config's filled-in default is not knowledge)."""
    known: list[tuple[BitrateSource, int, str]] = []
    if flag is not None:
        known.append(("flag", flag, f"{rate_text(flag)} from --bitrate"))
    if recorded is not None:
        known.append(("recording", recorded, f"{rate_text(recorded)} from the recording"))
    if config is not None:
        known.append(("config", config, f"{rate_text(config)} from the config"))
    if inference is not None and inference.bitrate is not None:
        known.append(("inferred", inference.bitrate, inference.reason))
    if not known:
        why = f"; {inference.reason}" if inference is not None else ""
        return BitrateChoice(
            default,
            "assumed",
            f"{rate_text(default)} assumed: not given, not recorded, not inferable{why}",
        )
    source, rate, detail = known[0]
    notes: list[str] = []
    for other, other_rate, other_detail in known[1:]:
        if other_rate == rate:
            continue
        if other == "inferred":
            notes.append(f"the timestamps suggest {rate_text(other_rate)}, not {rate_text(rate)}")
        else:
            notes.append(f"{other_detail} disagrees; {rate_text(rate)} ({source}) is used")
    return BitrateChoice(rate, source, detail, tuple(notes))
