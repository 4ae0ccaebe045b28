"""Per-identifier statistics: count, period, jitter, last seen, and cycle-time keeping.

Owns :class:`IdStats`, which keeps, per (channel, id, extended, kind), the frame count, first
and last timestamps and the inter-arrival statistics (mean, std = jitter, min, max) plus a
log-scale period histogram (16 bins per octave, 61 µs .. 1024 s) from which the 95th
percentile is read to within about ±2 %.

Vectorized: a batch is sorted by (key, timestamp) once; inter-arrival times are one
``np.diff``; per-key sums come from ``np.bincount``/``np.minimum.reduceat``; the previous
batch's last timestamp per key supplies the first interval, and batch statistics are merged
into the running ones with the Chan/Welford parallel formula, which stays stable over
millions of intervals (no catastrophic cancellation of sum-of-squares).

Error frames are not identifiers (their ``can_id`` holds error classes) and are left out.

Also here: :class:`CappedIdCounter`, frames per identifier with a bound on how many
identifiers are kept, which the decode summaries, the bus report and the per-id metrics share.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from candiag.decode.decoder import count_ids
from candiag.health.arrays import run_bounds
from candiag.health.jsontypes import JsonObject
from candiag.health.thresholds import CycleThresholds
from candiag.ingest.frames import (
    FLAG_ERROR,
    FLAG_EXTENDED,
    FLAG_REMOTE,
    FrameBatch,
    format_can_id,
)

BINS_PER_OCTAVE = 16
LOWEST_OCTAVE = -14  # 2**-14 s = 61 µs
OCTAVES = 24  # up to 2**10 s = 1024 s
N_BINS = BINS_PER_OCTAVE * OCTAVES
# A bus carries tens to a few hundred ids; the cap bounds memory (about 1.6 kB per id) when a
# capture is garbage (random ids), and frames of ids beyond it are only counted.
DEFAULT_MAX_IDS = 4096

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# A cycle lookup: {can_id: cycle_ms} or a function (can_id, extended) -> cycle_ms | None.
CycleLookup = Mapping[int, float] | Callable[[int, bool], float | None]
# An identifier key as the decoder counts identifiers (candiag.decode.decoder.count_ids): the
# identifier with this bit set when it is extended, so standard and extended 0x100 stay apart.
EXTENDED_KEY_BIT = 1 << 31


def id_key_text(key: int) -> str:
    """An identifier key as CAN users write it (``0x123`` standard, ``0x00000123`` extended)."""
    return format_can_id(key & ~EXTENDED_KEY_BIT, bool(key & EXTENDED_KEY_BIT))


class CappedIdCounter:
    """Frames per identifier for the first ``cap`` identifiers; later ones are only totalled.

    Garbage traffic (random 29-bit ids) would otherwise add an entry per id for ever: issue
    13 saw a daemon grow by 112 MB a minute at 28k frames/s.  An id keeps its entry once
    admitted, so a count never moves between an id and ``untracked``: totals stay exact and
    an exported per-id counter stays monotonic.  Keys are :data:`EXTENDED_KEY_BIT` keys.
    The cap is the caller's: summaries keep :data:`DEFAULT_MAX_IDS` ids, the metrics fewer
    (label cardinality).
    """

    def __init__(self, cap: int = DEFAULT_MAX_IDS) -> None:
        self.cap = cap
        self.counts: Counter[int] = Counter()
        self.untracked = 0  # frames of identifiers beyond the cap

    def update(self, counts: Mapping[int, int]) -> None:
        """Add frame counts per key (admitted in the order given)."""
        tracked = self.counts
        if len(tracked) + len(counts) <= self.cap:
            tracked.update(counts)
            return
        for key, n in counts.items():
            if key in tracked:
                tracked[key] += n
            elif len(tracked) < self.cap:
                tracked[key] = n
            else:
                self.untracked += n

    def add(self, can_id: npt.NDArray[np.uint32], is_extended: npt.NDArray[np.bool_]) -> None:
        """Add one frame per element (new identifiers admitted in key order)."""
        self.update(count_ids(can_id, is_extended))

    def total(self) -> int:
        return sum(self.counts.values()) + self.untracked

    def labelled(self, untracked_label: str) -> dict[str, int]:
        """Count per identifier text, and the untracked frames under ``untracked_label``."""
        out = {id_key_text(k): c for k, c in self.counts.items()}
        if self.untracked:
            out[untracked_label] = self.untracked
        return out

    def __len__(self) -> int:
        return len(self.counts)


def _key(
    channel: npt.NDArray[np.int64], can_id: npt.NDArray[np.uint32], flags: npt.NDArray[np.uint8]
) -> I64:
    ext = ((flags & FLAG_EXTENDED) != 0).astype(np.int64)
    remote = ((flags & FLAG_REMOTE) != 0).astype(np.int64)
    key: I64 = (channel << 32) | (ext << 30) | (remote << 29) | can_id.astype(np.int64)
    return key


def bin_of(seconds: F64) -> npt.NDArray[np.intp]:
    raw = np.floor((np.log2(np.maximum(seconds, 1e-12)) - LOWEST_OCTAVE) * BINS_PER_OCTAVE)
    bins: npt.NDArray[np.intp] = np.clip(raw, 0, N_BINS - 1).astype(np.intp)
    return bins


def _bin_value(index: int) -> float:
    """Geometric centre of a histogram bin, in seconds."""
    return float(2.0 ** (LOWEST_OCTAVE + (index + 0.5) / BINS_PER_OCTAVE))


@dataclass(frozen=True)
class IdRow:
    """Statistics of one identifier on one channel (periods in seconds)."""

    channel: str
    can_id: int
    extended: bool
    kind: str  # "data" or "remote"
    count: int
    first_seen: float
    last_seen: float
    intervals: int
    period_mean: float | None
    period_std: float | None
    period_min: float | None
    period_max: float | None
    period_p95: float | None

    @property
    def id_text(self) -> str:
        return format_can_id(self.can_id, self.extended)

    def to_json(self) -> JsonObject:
        out = asdict(self)
        out["id"] = self.id_text
        return out


@dataclass(frozen=True)
class CycleCheck:
    """Whether one identifier keeps its declared cycle time."""

    row: IdRow
    declared_s: float
    keeps_cycle: bool | None  # None: too few periods measured to judge
    reason: str

    def to_json(self) -> JsonObject:
        return {
            **self.row.to_json(),
            "declared_s": self.declared_s,
            "keeps_cycle": self.keeps_cycle,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Periods:
    """The frames :meth:`IdStats.update` took in, by key then time, each with the period
    that ended with it (``dt``; NaN for a key's first frame ever or an out-of-order one)."""

    keys: I64
    ts: F64
    dt: F64

    @staticmethod
    def empty() -> Periods:
        return Periods(np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros(0, np.float64))

    def take(self, rows: npt.NDArray[np.intp] | slice) -> Periods:
        return Periods(self.keys[rows], self.ts[rows], self.dt[rows])


class IdStats:
    """Running per-identifier statistics over any number of batches and channels."""

    def __init__(self, max_ids: int = DEFAULT_MAX_IDS) -> None:
        self.max_ids = max_ids
        self.overflow_frames = 0  # frames of identifiers beyond ``max_ids`` (not tracked)
        self.channels: list[str] = []
        self.keys = np.empty(0, np.int64)  # sorted
        self.count = np.empty(0, np.int64)
        self.n_int = np.empty(0, np.int64)
        self.mean = np.empty(0, np.float64)
        self.m2 = np.empty(0, np.float64)
        self.pmin = np.empty(0, np.float64)
        self.pmax = np.empty(0, np.float64)
        self.first = np.empty(0, np.float64)
        self.last = np.empty(0, np.float64)
        self.hist = np.empty((0, N_BINS), np.int32)
        self.out_of_order = 0

    def __len__(self) -> int:
        return int(self.keys.size)

    @property
    def nbytes(self) -> int:
        return sum(
            int(a.nbytes)
            for a in (self.keys, self.count, self.n_int, self.mean, self.m2, self.pmin)
        ) + int(self.pmax.nbytes + self.first.nbytes + self.last.nbytes + self.hist.nbytes)

    def _channel_lut(self, names: list[str]) -> I64:
        for name in names:
            if name not in self.channels:
                self.channels.append(name)
        return np.array([self.channels.index(n) for n in names] or [0], np.int64)

    def _ensure(self, keys: I64) -> npt.NDArray[np.intp]:
        """Index of each (sorted, unique) key in the state arrays, adding new keys."""
        if self.keys.size:
            idx = np.searchsorted(self.keys, keys)
            if idx[-1] < self.keys.size and bool((self.keys[idx] == keys).all()):
                return idx.astype(np.intp)  # all known already (the usual case)
        new = np.setdiff1d(keys, self.keys, assume_unique=True)
        if new.size:
            merged = np.union1d(self.keys, new)
            where_old = np.searchsorted(merged, self.keys)
            size = merged.size
            self.count = _grow(self.count, where_old, size, 0)
            self.n_int = _grow(self.n_int, where_old, size, 0)
            self.mean = _grow(self.mean, where_old, size, 0.0)
            self.m2 = _grow(self.m2, where_old, size, 0.0)
            self.pmin = _grow(self.pmin, where_old, size, np.inf)
            self.pmax = _grow(self.pmax, where_old, size, -np.inf)
            self.first = _grow(self.first, where_old, size, np.inf)
            self.last = _grow(self.last, where_old, size, np.nan)
            hist = np.zeros((size, N_BINS), np.int32)
            hist[where_old] = self.hist
            self.hist = hist
            self.keys = merged
        return np.searchsorted(self.keys, keys).astype(np.intp)

    def _admit(self, keys: I64, ts: F64) -> tuple[I64, F64]:
        """Drop (and count) the frames of new ids that do not fit under ``max_ids``."""
        room = self.max_ids - self.keys.size
        if keys.size <= room:
            return keys, ts  # not even all-new ids could overflow
        # Known ids first, by a search in the sorted keys: a unique over every frame of a
        # batch would cost more than the rest of the update (bench_analyze's profile).
        at = np.searchsorted(self.keys, keys).clip(max=max(self.keys.size - 1, 0))
        known = self.keys[at] == keys if self.keys.size else np.zeros(keys.size, np.bool_)
        unknown = keys[~known]
        if unknown.size <= room:
            return keys, ts
        new = np.unique(unknown)
        if new.size <= room:
            return keys, ts
        rejected = np.isin(keys, new[max(room, 0) :])
        self.overflow_frames += int(rejected.sum())
        return keys[~rejected], ts[~rejected]

    def update(self, batch: FrameBatch) -> Periods:
        """Add the data and remote frames of ``batch``; what was taken in, with its periods."""
        rows = np.flatnonzero((batch.flags & FLAG_ERROR) == 0)
        if rows.size == 0:
            return Periods.empty()
        lut = self._channel_lut(batch.channels or ["can0"])
        keys = _key(lut[batch.channel[rows]], batch.can_id[rows], batch.flags[rows])
        ts = batch.timestamp[rows]
        order = np.lexsort((ts, keys))
        keys, ts = keys[order], ts[order]
        keys, ts = self._admit(keys, ts)
        n = keys.size
        if n == 0:
            return Periods.empty()
        starts, stops = run_bounds(keys)
        sizes = stops - starts
        idx = self._ensure(keys[starts])
        group = np.repeat(np.arange(starts.size), sizes)

        # Each frame's period runs from the key's newest earlier frame: the one before it
        # in the batch, or the last one of earlier batches if that is newer (a late frame
        # is no period, and the frame after it is measured from the newest one, not from
        # the late one: a review found a false 3 s period made that way).
        before = np.empty(n, np.float64)
        before[1:] = ts[:-1]
        before[starts] = np.nan
        before = np.fmax(before, np.repeat(self.last[idx], sizes))  # NaN: a key never seen
        intervals = ts - before
        valid = np.isfinite(intervals) & (intervals >= 0)
        self.out_of_order += int(np.count_nonzero(intervals < 0))
        self._merge_intervals(idx, group, starts, intervals, valid)

        self.count[idx] += sizes
        self.first[idx] = np.minimum(self.first[idx], ts[starts])
        ends = np.append(starts[1:], n) - 1
        self.last[idx] = np.fmax(self.last[idx], ts[ends])
        return Periods(keys, ts, np.where(valid, intervals, np.nan))

    def fresh_epoch(self) -> IdStats:
        """An empty IdStats continuing this one's timeline (for epoch-based verdicts).

        It knows every id's last frame, so the first interval of each id in the new epoch
        is measured across the boundary and no interval is lost when epochs are merged.
        """
        new = IdStats(self.max_ids)
        new.channels = list(self.channels)
        size = self.keys.size
        new.keys = self.keys.copy()
        new.count = np.zeros(size, np.int64)
        new.n_int = np.zeros(size, np.int64)
        new.mean = np.zeros(size, np.float64)
        new.m2 = np.zeros(size, np.float64)
        new.pmin = np.full(size, np.inf)
        new.pmax = np.full(size, -np.inf)
        new.first = np.full(size, np.inf)
        new.last = self.last.copy()
        new.hist = np.zeros((size, N_BINS), np.int32)
        return new

    def merge(self, later: IdStats) -> None:
        """Add the statistics of ``later``, a following epoch (see :meth:`fresh_epoch`)."""
        if self.channels != later.channels[: len(self.channels)]:
            raise ValueError("merge needs an epoch made by fresh_epoch() of this IdStats")
        self.channels = list(later.channels)
        self.overflow_frames += later.overflow_frames
        self.out_of_order += later.out_of_order
        if later.keys.size == 0:
            return
        idx = self._ensure(later.keys)
        n_a = self.n_int[idx].astype(np.float64)
        n_b = later.n_int.astype(np.float64)
        total = n_a + n_b
        delta = later.mean - self.mean[idx]
        safe = np.maximum(total, 1)
        self.mean[idx] += delta * n_b / safe
        self.m2[idx] += later.m2 + delta**2 * n_a * n_b / safe
        self.n_int[idx] = total.astype(np.int64)
        self.pmin[idx] = np.minimum(self.pmin[idx], later.pmin)
        self.pmax[idx] = np.maximum(self.pmax[idx], later.pmax)
        self.count[idx] += later.count
        self.first[idx] = np.minimum(self.first[idx], later.first)
        self.last[idx] = np.fmax(self.last[idx], later.last)
        self.hist[idx] += later.hist

    def copy(self) -> IdStats:
        new = self.fresh_epoch()
        new.merge(self)
        new.overflow_frames, new.out_of_order = self.overflow_frames, self.out_of_order
        new.last = self.last.copy()
        return new

    def _merge_intervals(
        self,
        idx: npt.NDArray[np.intp],
        group: npt.NDArray[np.int64],
        starts: npt.NDArray[np.intp],
        intervals: F64,
        valid: npt.NDArray[np.bool_],
    ) -> None:
        g = starts.size
        d = np.where(valid, intervals, 0.0)
        n_b = np.bincount(group, weights=valid.astype(np.float64), minlength=g)
        mean_b = np.bincount(group, weights=d, minlength=g) / np.maximum(n_b, 1)
        m2_b = np.bincount(
            group, weights=np.where(valid, (d - mean_b[group]) ** 2, 0.0), minlength=g
        )
        min_b = np.minimum.reduceat(np.where(valid, intervals, np.inf), starts)
        max_b = np.maximum.reduceat(np.where(valid, intervals, -np.inf), starts)
        # Chan et al. parallel merge of (n, mean, M2).
        n_a = self.n_int[idx].astype(np.float64)
        total = n_a + n_b
        delta = mean_b - self.mean[idx]
        safe = np.maximum(total, 1)
        self.mean[idx] += delta * n_b / safe
        self.m2[idx] += m2_b + delta**2 * n_a * n_b / safe
        self.n_int[idx] = total.astype(np.int64)
        self.pmin[idx] = np.minimum(self.pmin[idx], min_b)
        self.pmax[idx] = np.maximum(self.pmax[idx], max_b)
        flat = idx[group[valid]] * N_BINS + bin_of(intervals[valid])
        self.hist += (
            np.bincount(flat, minlength=self.hist.size).reshape(self.hist.shape).astype(np.int32)
        )

    def cycle_verdicts(
        self, declared_s: F64, thresholds: CycleThresholds | None = None
    ) -> npt.NDArray[np.int8]:
        """Vectorized :meth:`check_cycles`: per key 1 keeps its cycle, 0 breaks it, -1 not judged.

        ``declared_s`` is the declared period of each key (aligned with :attr:`keys`; 0 or
        NaN where there is none).  Same rule as :meth:`check_cycles`, over all ids at once.
        """
        t = thresholds or CycleThresholds()
        data = ((self.keys >> 29) & 1) == 0
        declared = np.where(data, np.nan_to_num(declared_s, nan=0.0), 0.0)
        return verdicts_of(self.n_int, self.mean, self.hist, declared, t, (self.pmin, self.pmax))

    def _p95(self, i: int) -> float | None:
        counts = self.hist[i]
        total = int(counts.sum())
        if total == 0:
            return None
        at = int(np.searchsorted(np.cumsum(counts), 0.95 * total))
        # A bin's centre can lie beyond the periods in it: the percentile is never reported
        # outside the measured range (a p95 above the longest period is not true).
        return float(min(max(_bin_value(at), self.pmin[i]), self.pmax[i]))

    def rows(self) -> list[IdRow]:
        """One :class:`IdRow` per identifier, by channel then id."""
        out = []
        for i, key in enumerate(self.keys.tolist()):
            n_int = int(self.n_int[i])
            has = n_int > 0
            out.append(
                IdRow(
                    channel=self.channels[key >> 32],
                    can_id=key & 0x1FFFFFFF,
                    extended=bool(key >> 30 & 1),
                    kind="remote" if key >> 29 & 1 else "data",
                    count=int(self.count[i]),
                    first_seen=float(self.first[i]),
                    last_seen=float(self.last[i]),
                    intervals=n_int,
                    period_mean=float(self.mean[i]) if has else None,
                    period_std=float(np.sqrt(self.m2[i] / n_int)) if has else None,
                    period_min=float(self.pmin[i]) if has else None,
                    period_max=float(self.pmax[i]) if has else None,
                    period_p95=self._p95(i),
                )
            )
        return out

    def check_cycles(
        self, cycles: CycleLookup, thresholds: CycleThresholds | None = None
    ) -> list[CycleCheck]:
        """Judge every data identifier that has a declared cycle time.

        Keeps its cycle: mean period within ``mean_tolerance`` of the declared period and 95th
        percentile at most ``p95_factor`` times it, once ``min_intervals`` periods are known.
        """
        t = thresholds or CycleThresholds()
        lookup = _as_lookup(cycles)
        out = []
        for row in self.rows():
            if row.kind != "data":
                continue
            cycle_ms = lookup(row.can_id, row.extended)
            if not cycle_ms:
                continue
            declared = cycle_ms / 1000.0
            out.append(CycleCheck(row, declared, *_judge(row, declared, t)))
        return out

    def to_json(self) -> JsonObject:
        return {
            "source": "frames",
            "ids": [r.to_json() for r in self.rows()],
            "out_of_order_frames": self.out_of_order,
            "untracked_frames": self.overflow_frames,
            "max_ids": self.max_ids,
        }


def verdicts_of(
    n_int: I64,
    mean: F64,
    hist: npt.NDArray[np.int64] | npt.NDArray[np.int32],
    declared_s: F64,
    t: CycleThresholds,
    bounds: tuple[F64, F64] | None = None,
) -> npt.NDArray[np.int8]:
    """Per id 1 keeps its declared cycle, 0 breaks it, -1 not judged (too few periods):
    mean within ``mean_tolerance`` of the declared period and 95th percentile at most
    ``p95_factor`` times it.  ``bounds``: each id's shortest and longest period, which
    the percentile (a bin's centre) is kept within, as :meth:`IdStats.rows` reports it."""
    total = hist.sum(axis=1)
    below = np.cumsum(hist, axis=1) < 0.95 * total[:, None]
    p95 = 2.0 ** (LOWEST_OCTAVE + (below.sum(axis=1) + 0.5) / BINS_PER_OCTAVE)
    if bounds is not None:
        p95 = np.minimum(np.maximum(p95, bounds[0]), bounds[1])
    declared = np.nan_to_num(declared_s, nan=0.0)
    judged = (declared > 0) & (n_int >= t.min_intervals) & (total > 0)
    safe = np.where(declared > 0, declared, 1.0)
    keeps = (np.abs(mean / safe - 1.0) <= t.mean_tolerance) & (p95 <= t.p95_factor * safe)
    verdict: npt.NDArray[np.int8] = np.where(judged, keeps.astype(np.int8), np.int8(-1))
    return verdict


def _judge(row: IdRow, declared: float, t: CycleThresholds) -> tuple[bool | None, str]:
    if row.intervals < t.min_intervals or row.period_mean is None or row.period_p95 is None:
        return None, f"only {row.intervals} periods measured (need {t.min_intervals})"
    off = row.period_mean / declared - 1.0
    if abs(off) > t.mean_tolerance:
        return False, (
            f"mean period {row.period_mean * 1000:.1f} ms is {off:+.0%} off the declared "
            f"{declared * 1000:.0f} ms (tolerance ±{t.mean_tolerance:.0%})"
        )
    if row.period_p95 > t.p95_factor * declared:
        return False, (
            f"95 % of periods within {row.period_p95 * 1000:.1f} ms, more than "
            f"{t.p95_factor:g} x the declared {declared * 1000:.0f} ms: frames come late or are lost"
        )
    return True, f"mean {row.period_mean * 1000:.1f} ms, p95 {row.period_p95 * 1000:.1f} ms"


def _as_lookup(cycles: CycleLookup) -> Callable[[int, bool], float | None]:
    if isinstance(cycles, Mapping):
        table = cycles
        return lambda can_id, _extended: table.get(can_id)
    return cycles


def _grow(
    old: npt.NDArray[Any], where_old: npt.NDArray[np.intp], size: int, fill: float
) -> npt.NDArray[Any]:
    new = np.full(size, fill, old.dtype)
    new[where_old] = old
    return new
