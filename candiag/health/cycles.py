"""Cycle-time stretches: which identifier broke its declared cycle time, and when.

Owns :class:`CycleHistory`.  Time is cut in fixed steps of :data:`CYCLE_STEP_S`
(``[k * step, (k + 1) * step)``), so a capture read in any batches and a live bus fed
every quarter second judge the same frames alike.  At the end of each step the last
minute (:data:`CYCLE_WINDOW_S`, six steps) of each identifier's periods is judged as
:func:`candiag.health.ids.verdicts_of` judges an epoch: the same thresholds, the 95th
percentile read from the same histogram bins (as their centre: the ids table also keeps it
within the measured periods, a difference within a bin, 1/16 octave).  Broken verdicts are kept as stretches
(:class:`CycleBreak`), bounded by the steps whose own periods were off (late periods, or
a mean off the declared cycle); an identifier that stays broken extends its stretch.

Vectorized across steps as well as frames: a batch's periods (what
:meth:`candiag.health.ids.IdStats.update` measured) are summed per (step, identifier) with
one ``bincount`` each, the minutes ending at every step of the batch are differences of
running sums over those rows, and the stretches are merged per identifier with array
comparisons.  A batch (a reader's chunk, hours of a thin capture) is judged in a few passes
whatever its number of steps, in blocks of at most :data:`MAX_BLOCK_CELLS` (step x id)
cells so memory stays bounded: issue 15 measured the same frames over 10 h costing 2.5
times those over 10 min while each step was judged on its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from candiag.health.arrays import run_bounds
from candiag.health.ids import BINS_PER_OCTAVE, LOWEST_OCTAVE, N_BINS, Periods, bin_of
from candiag.health.thresholds import CycleThresholds

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Indices = npt.NDArray[np.intp]

# Broken-cycle stretches a live bus remembers (offline: all of them); a healthy bus records
# none, and an identifier that stays broken extends one stretch rather than adding more.
MAX_CYCLE_BREAKS = 20_000
# Cycle verdicts are judged over the last minute of periods, every 10 s.
CYCLE_WINDOW_S = 60.0
CYCLE_STEP_S = 10.0
WINDOW_STEPS = round(CYCLE_WINDOW_S / CYCLE_STEP_S)

# A batch's steps are judged in blocks of at most MAX_BLOCK_CELLS / (ids judged) steps
# (and at least MIN_BLOCK_STEPS): each figure is a (steps x ids) array.
MAX_BLOCK_CELLS = 262_144
MIN_BLOCK_STEPS = 16

# The per-step sums, in this order along the first axis of :attr:`_Rows.sums`.
N, TOTAL, M2, WITHIN, LATE = range(5)
SUMS = 5

# Declared periods of identifiers: 0 where none is declared (not judged).
DeclaredOf = Callable[[I64], F64]


def step_of(ts: F64, running: int | None = None) -> I64:
    """The cycle step of each timestamp; a late one (before ``running``) counts in it."""
    steps: I64 = np.floor(ts / CYCLE_STEP_S).astype(np.int64)
    return steps if running is None else np.maximum(steps, running)


@dataclass(frozen=True)
class CycleBreak:
    """One identifier that broke its declared cycle over ``[start, end)``.

    ``key`` is an :class:`candiag.health.ids.IdStats` key; the bounds are the 10 s steps
    whose own periods were off (late periods, or a mean off the declared cycle) within
    the minutes judged broken; the figures are those of the last minute judged.
    """

    key: int
    start: float
    end: float
    count: int
    mean_period_s: float
    jitter_s: float | None
    last_seen: float


@dataclass
class _Rows:
    """Per step (rows, ascending) and judged identifier (columns, by key) the figures of
    its periods that a verdict needs: ``sums[N]`` periods, ``sums[TOTAL]`` their sum,
    ``sums[M2]`` the sum of their squared distances to their mean (centred, so a jitter of
    a microsecond on a period of a second is not lost to cancellation; pooled across
    batches and steps with Chan's formula, :func:`_pooled_m2`), ``sums[WITHIN]`` how many are in
    histogram bins whose centre is at most ``p95_factor`` x the cycle (the 95th
    percentile is within it when 95 % are), ``sums[LATE]`` how many are in bins above the
    one holding that limit.  ``last``: the identifier's newest frame as of the step's end
    (NaN: none yet)."""

    steps: I64
    sums: F64  # (SUMS, steps, keys)
    last: F64  # (steps, keys)

    @staticmethod
    def empty(keys: int) -> _Rows:
        return _Rows(np.zeros(0, np.int64), np.zeros((SUMS, 0, keys)), np.zeros((0, keys)))

    def __len__(self) -> int:
        return int(self.steps.size)

    def take(self, rows: Indices | slice) -> _Rows:
        return _Rows(self.steps[rows], self.sums[:, rows], self.last[rows])

    def then(self, later: _Rows) -> _Rows:
        """These rows followed by ``later``'s; a first row of the same step as this last
        one is added into it (the running step went on in a later batch)."""
        if len(self) and len(later) and later.steps[0] == self.steps[-1]:
            merged = self.take(slice(None))
            merged.sums = merged.sums.copy()
            merged.last = merged.last.copy()
            a, b = merged.sums[:, -1], later.sums[:, 0]
            a[M2] = _pooled_m2(a[N], a[TOTAL], a[M2], b[N], b[TOTAL], b[M2])
            for index in (N, TOTAL, WITHIN, LATE):
                a[index] += b[index]
            merged.last[-1] = np.fmax(merged.last[-1], later.last[0])
            later = later.take(slice(1, None))
            return merged.then(later) if len(later) else merged
        rows = _Rows(
            np.concatenate((self.steps, later.steps)),
            np.concatenate((self.sums, later.sums), axis=1),
            np.concatenate((self.last, later.last)),
        )
        rows.last = np.fmax.accumulate(rows.last, axis=0)  # as of each step's end
        return rows

    def with_columns(self, where_old: Indices, keys: int) -> _Rows:
        """The same rows over ``keys`` columns, the old ones moved to ``where_old``."""
        sums = np.zeros((SUMS, len(self), keys))
        sums[:, :, where_old] = self.sums
        last = np.full((len(self), keys), np.nan)
        last[:, where_old] = self.last
        return _Rows(self.steps, sums, last)


class CycleHistory:
    """Sliding-minute cycle verdicts every :data:`CYCLE_STEP_S`, kept as broken stretches.

    :meth:`add` takes a batch's periods and the steps its frames fell in; every step the
    batch closed is judged (the minute ending with it), and the last step stays running
    (:meth:`pending` judges it without keeping anything).  A minute with no late period
    and no mean off in any step is not judged.  Only broken verdicts are kept, at most
    ``cap`` stretches (the newest; ``None``: all).
    """

    def __init__(self, cap: int | None = MAX_CYCLE_BREAKS) -> None:
        self.cap = cap
        self._closed: list[CycleBreak] = []
        # The latest stretch of each identifier that broke: columns by sorted key.
        self._latest = _Broken.empty()
        self._seen = np.zeros(0, np.int64)  # every key looked up (sorted)
        self._keys = np.zeros(0, np.int64)  # the judged ones (a declared cycle): the columns
        self._declared = np.zeros(0, np.float64)  # their declared periods, s
        # The closed steps of the last minute and the running one (the last row).
        self._rows = _Rows.empty(0)

    @property
    def breaks(self) -> list[CycleBreak]:
        """Every kept stretch, oldest first."""
        return sorted([*self._closed, *self._latest.rows()], key=lambda b: (b.start, b.key))

    def add(
        self,
        steps: I64,
        periods: Sequence[Periods],
        declared_of: DeclaredOf,
        thresholds: CycleThresholds,
    ) -> None:
        """Fold a batch in: ``steps`` are the steps its frames fell in (ascending, unique;
        none before the running one), ``periods`` what :meth:`IdStats.update` measured of
        its frames, ``declared_of`` the declared period of keys never seen before."""
        if not steps.size:
            return
        self._learn(periods, declared_of)
        block = max(MIN_BLOCK_STEPS, MAX_BLOCK_CELLS // max(self._keys.size, 1))
        if steps.size <= block:
            self._add_block(steps, periods, thresholds)
            return
        # A batch spanning many steps (hours of a thin capture in one chunk) is judged in
        # blocks of steps, so the (steps x ids) figures stay bounded: a review saw 3.6 GB
        # for 2 days of one frame every 10 s with 1,024 ids that have a cycle.
        parts = [_by_step(part, steps) for part in periods if part.keys.size]
        for lo in range(0, steps.size, block):
            hi = min(lo + block, steps.size)
            sub = [part.take(slice(*np.searchsorted(rows, (lo, hi)))) for part, rows in parts]
            self._add_block(steps[lo:hi], sub, thresholds)

    def _add_block(
        self, steps: I64, periods: Sequence[Periods], thresholds: CycleThresholds
    ) -> None:
        before = self._rows
        running = int(before.steps[-1]) if len(before) else None
        if running is not None and steps[0] < running:
            raise ValueError(
                f"CycleHistory.add: step {int(steps[0])} is before the running step {running}; "
                "hand steps over in time order, late frames in the running step "
                "(as BusPipeline._track_recent_ids does)"
            )
        rows = before.then(self._step_sums(steps, periods, thresholds))
        # Judge the steps now closed: the running one if the batch moved on, and every
        # step of the batch but its last.
        first = len(before) - 1 if running is not None else 0
        closed = np.arange(first, len(rows) - 1, dtype=np.intp)
        if closed.size:
            self._keep(_judge(rows, closed, self._columns(), thresholds))
        newest = int(rows.steps[-1])
        self._rows = rows.take(np.flatnonzero(rows.steps > newest - WINDOW_STEPS))

    def pending(self, thresholds: CycleThresholds) -> list[CycleBreak]:
        """Verdicts of the minute ending with the step still running (nothing kept)."""
        rows = self._rows
        if not len(rows):
            return []
        last = np.array([len(rows) - 1], np.intp)
        return _judge(rows, last, self._columns(), thresholds).rows()

    def _columns(self) -> _Columns:
        return _Columns(self._keys, self._declared)

    def _learn(self, periods: Sequence[Periods], declared_of: DeclaredOf) -> None:
        """Look up the declared period of keys never seen; the judged ones become columns."""
        heads = [p.keys[run_bounds(p.keys)[0]] for p in periods if p.keys.size]
        if not heads:
            return
        new = np.setdiff1d(np.unique(np.concatenate(heads)), self._seen, assume_unique=True)
        if not new.size:
            return
        self._seen = np.union1d(self._seen, new)
        data = ((new >> 29) & 1) == 0  # remote frames carry no cycle of their own
        declared = np.where(data, np.nan_to_num(declared_of(new), nan=0.0), 0.0)
        judged = declared > 0
        if not judged.any():
            return
        keys = np.concatenate((self._keys, new[judged]))
        order = np.argsort(keys, kind="stable")
        self._declared = np.concatenate((self._declared, declared[judged]))[order]
        where_old = np.argsort(order, kind="stable")[: self._keys.size]
        self._keys = keys[order]
        self._rows = self._rows.with_columns(where_old.astype(np.intp), self._keys.size)

    def _step_sums(self, steps: I64, periods: Sequence[Periods], t: CycleThresholds) -> _Rows:
        """The batch's figures per (step, judged key): one bincount per figure."""
        n_keys = self._keys.size
        size = steps.size * n_keys
        sums = np.zeros((SUMS, size))
        last = np.full(size, np.nan)
        limit = t.p95_factor * self._declared
        # Bins up to centre_bin have their centre at most at the limit; those above
        # holding_bin are wholly beyond it (the bins :func:`_judge_minute` used to read).
        centre_bin = np.floor(
            (np.log2(np.maximum(limit, 1e-12)) - LOWEST_OCTAVE) * BINS_PER_OCTAVE - 0.5
        ).clip(-1, N_BINS - 1)
        holding_bin = bin_of(limit)
        for part in periods:
            if not part.keys.size or not n_keys:
                continue
            col = np.searchsorted(self._keys, part.keys).clip(max=n_keys - 1)
            judged = self._keys[col] == part.keys
            col, ts, dt = col[judged], part.ts[judged], part.dt[judged]
            if not col.size:
                continue
            # A late frame counts in the running step, as the steps were handed over.
            flat = np.searchsorted(steps, step_of(ts, int(steps[0]))) * n_keys + col
            valid = np.isfinite(dt)
            at, d, c = flat[valid], dt[valid], col[valid]
            b = bin_of(d)
            n = np.bincount(at, minlength=size).astype(np.float64)
            total = np.asarray(np.bincount(at, weights=d, minlength=size), np.float64)
            centred = d - (total / np.maximum(n, 1))[at]
            m2 = np.asarray(np.bincount(at, weights=centred * centred, minlength=size), np.float64)
            sums[M2] = _pooled_m2(sums[N], sums[TOTAL], sums[M2], n, total, m2)
            sums[N] += n
            sums[TOTAL] += total
            for index, counted in (
                (WITHIN, b <= centre_bin[c]),
                (LATE, b > holding_bin[c]),
            ):
                sums[index] += np.bincount(at, weights=counted.astype(np.float64), minlength=size)
            # Frames are by key then time, so each (step, key) is one run: its last frame.
            stop = run_bounds(flat)[1] - 1
            last[flat[stop]] = np.fmax(last[flat[stop]], ts[stop])
        return _Rows(
            steps.copy(),
            sums.reshape(SUMS, steps.size, n_keys),
            last.reshape(steps.size, n_keys),
        )

    def _keep(self, broken: _Broken) -> None:
        """Extend each identifier's latest stretch, or start a new one.

        ``broken`` holds the verdicts by key, then step.  With the latest stretches put
        first, a verdict continues the stretch before it unless it starts after that one
        ended: a stretch's start and end only grow with the step judged, so a comparison
        with the previous row decides, and each group's last row carries its figures."""
        if not broken.keys.size:
            return
        rows = self._latest.then(broken)
        new_key = np.ones(rows.keys.size, np.bool_)
        new_key[1:] = rows.keys[1:] != rows.keys[:-1]
        begins = new_key.copy()
        begins[1:] |= rows.start[1:] > rows.end[:-1]
        heads = np.flatnonzero(begins)
        tails = np.append(heads[1:], rows.keys.size) - 1
        stretches = rows.take(tails)
        stretches.start = rows.start[heads]
        stretches.end = np.maximum.reduceat(rows.end, heads)
        # The last stretch of each key is its latest; the ones before it are over.
        is_latest = np.append(new_key[heads[1:]], True)
        self._closed.extend(stretches.take(np.flatnonzero(~is_latest)).rows())
        self._latest = stretches.take(np.flatnonzero(is_latest))
        if self.cap is not None and len(self._closed) + self._latest.keys.size > self.cap:
            self._closed.sort(key=lambda b: b.start)
            del self._closed[: max(1, len(self._closed) - self.cap // 2)]


def _by_step(part: Periods, steps: I64) -> tuple[Periods, npt.NDArray[np.intp]]:
    """``part`` ordered by the step row of each frame (stable: by key then time within a
    step), and those rows, ascending."""
    rows = np.searchsorted(steps, step_of(part.ts, int(steps[0])))
    order = np.argsort(rows, kind="stable")
    return part.take(order), rows[order]


@dataclass(frozen=True)
class _Columns:
    """The judged keys (:class:`_Rows`' columns) and their declared periods."""

    keys: I64
    declared: F64


def _judge(rows: _Rows, which: Indices, columns: _Columns, t: CycleThresholds) -> _Broken:
    """The broken identifiers of the minutes ending with the steps ``which``, by key
    then step, each bounded by the steps of its minute that held its fault."""
    declared = columns.declared
    sums = rows.sums
    lo = np.searchsorted(rows.steps, rows.steps[which] - (WINDOW_STEPS - 1)).astype(np.intp)
    running = np.zeros((SUMS, len(rows) + 1, declared.size))
    np.cumsum(sums, axis=1, out=running[:, 1:])
    minute = running[:, which + 1] - running[:, lo]  # (SUMS, judged steps, keys)
    step_n = sums[N]
    step_mean = sums[TOTAL] / np.maximum(step_n, 1)
    off = (step_n > 0) & (np.abs(step_mean / declared - 1.0) > t.mean_tolerance)
    bad = (sums[LATE] > 0) | off  # (steps, keys): the steps that held a fault
    bad_so_far = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(bad.any(axis=1), out=bad_so_far[1:])
    # A minute with no late period and no mean off in any step cannot be broken.
    looked_at = (bad_so_far[which + 1] - bad_so_far[lo]) > 0
    n = minute[N]
    mean = minute[TOTAL] / np.maximum(n, 1)
    judged = (n >= t.min_intervals) & (n > 0)
    keeps = (np.abs(mean / declared - 1.0) <= t.mean_tolerance) & (minute[WITHIN] >= 0.95 * n)
    col, j = np.nonzero((judged & ~keeps & looked_at[:, None]).T)  # by key, then step
    if not col.size:
        return _Broken.empty()
    r, first_row = which[j], lo[j]
    steps = np.arange(len(rows))[:, None]
    latest_bad = np.maximum.accumulate(np.where(bad, steps, -1), axis=0)
    next_bad = np.minimum.accumulate(np.where(bad, steps, len(rows))[::-1], axis=0)[::-1]
    # The steps that held the fault bound the stretch (the whole minute if none did).
    first = next_bad[first_row, col]
    first = np.where(first <= r, first, first_row)
    last = latest_bad[r, col]
    last = np.where(last >= first_row, last, r)
    n_b = n[j, col]
    mean_b = mean[j, col]
    var = _minute_m2(sums, first_row, r, col, mean_b) / np.maximum(n_b, 1)
    return _Broken(
        keys=columns.keys[col],
        start=rows.steps[first].astype(np.float64) * CYCLE_STEP_S,
        end=(rows.steps[last] + 1).astype(np.float64) * CYCLE_STEP_S,
        count=n_b.astype(np.int64) + 1,
        mean=mean_b,
        jitter=np.where(n_b > 0, np.sqrt(np.maximum(var, 0.0)), np.nan),
        last=rows.last[r, col],
    )


def _pooled_m2(n_a: F64, total_a: F64, m2_a: F64, n_b: F64, total_b: F64, m2_b: F64) -> F64:
    """The centred sum of squares of two groups of periods taken together (Chan et al.)."""
    both = n_a + n_b
    delta = total_b / np.maximum(n_b, 1) - total_a / np.maximum(n_a, 1)
    pooled: F64 = (
        m2_a
        + m2_b
        + np.where((n_a > 0) & (n_b > 0), delta * delta * n_a * n_b / np.maximum(both, 1), 0.0)
    )
    return pooled


def _minute_m2(sums: F64, first_row: Indices, last_row: Indices, col: Indices, mean: F64) -> F64:
    """The centred sum of squares of each (minute, key) asked for: its steps' own plus
    their means' distances to the minute's (a minute holds at most WINDOW_STEPS rows)."""
    rows = first_row[:, None] + np.arange(WINDOW_STEPS)[None, :]
    inside = rows <= last_row[:, None]
    rows = np.minimum(rows, last_row[:, None])
    cols = col[:, None]
    n = np.where(inside, sums[N][rows, cols], 0.0)
    step_mean = sums[TOTAL][rows, cols] / np.maximum(n, 1)
    spread = n * (step_mean - mean[:, None]) ** 2
    total: F64 = np.where(inside, sums[M2][rows, cols] + spread, 0.0).sum(axis=1)
    return total


@dataclass
class _Broken:
    """Broken-cycle verdicts or stretches as columns."""

    keys: I64
    start: F64
    end: F64
    count: I64
    mean: F64
    jitter: F64  # NaN: not known
    last: F64

    @staticmethod
    def empty() -> _Broken:
        f = np.zeros(0, np.float64)
        return _Broken(
            np.zeros(0, np.int64), f, f.copy(), np.zeros(0, np.int64), f.copy(), f.copy(), f.copy()
        )

    def take(self, rows: Indices) -> _Broken:
        return _Broken(*(getattr(self, f.name)[rows] for f in dataclasses.fields(self)))

    def then(self, later: _Broken) -> _Broken:
        """Both, by key; for a key in both, these rows first."""
        both = _Broken(
            *(
                np.concatenate((getattr(self, f.name), getattr(later, f.name)))
                for f in dataclasses.fields(self)
            )
        )
        return both.take(np.argsort(both.keys, kind="stable"))

    def rows(self) -> list[CycleBreak]:
        return [
            CycleBreak(k, s, e, c, m, None if np.isnan(j) else j, last)
            for k, s, e, c, m, j, last in zip(
                self.keys.tolist(),
                self.start.tolist(),
                self.end.tolist(),
                self.count.tolist(),
                self.mean.tolist(),
                self.jitter.tolist(),
                self.last.tolist(),
                strict=True,
            )
        ]
