"""Per-identifier statistics for the raw view (as cansniffer and PCAN-View show them).

:class:`IdTracker` keeps, per identifier (the 11/29-bit id with its IDE flag), the frame
count, the first, previous and last timestamps, the last payload and DLC, and per byte
the time it last changed.  :meth:`IdTracker.feed` takes a whole
:class:`~candiag.ingest.frames.FrameBatch` and updates the state with numpy only: frames
are grouped by identifier with one stable sort, each group's last frame and the
byte changes between consecutive frames of an identifier are found with array
operations, so the cost per frame does not involve Python (the loop runs over the
identifiers *new* to the tracker, once each).  Error frames are counted, not tracked
(their "id" is a set of error-class bits).

The number of identifiers is capped (:data:`MAX_IDS`): a bus flooded with random ids
fills the table once, and the frames of later ids are counted as ``untracked``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from candiag.ingest.frames import CLASSIC_WIDTH, FrameBatch, format_can_id

MAX_IDS = 4096
#: A byte shown as "changed" for this long after its last change (cansniffer's default
#: hold time is 1 s; a little longer suits a screen refreshed four times a second).
CHANGE_HOLD_S = 2.0
EXTENDED_BIT = np.uint64(1 << 32)

F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]


@dataclass(frozen=True)
class IdRow:
    """One identifier as the raw view shows it."""

    can_id: int
    extended: bool
    count: int
    first_ts: float
    last_ts: float
    last_interval: float  # seconds between the last two frames (nan after one frame)
    mean_period: float  # (last - first) / (count - 1), nan after one frame
    dlc: int
    data: bytes
    changed: tuple[bool, ...]  # per byte of ``data``: changed within the hold time
    remote: bool

    @property
    def id_text(self) -> str:
        return format_can_id(self.can_id, self.extended)

    def age(self, now: float) -> float:
        return max(0.0, now - self.last_ts)

    def stale(self, now: float) -> bool:
        """Not seen for three of its periods (or 3 s for an id seen once)."""
        period = self.mean_period if math.isfinite(self.mean_period) else 1.0
        return self.age(now) > max(3.0 * period, 1.0)


class IdTracker:
    """Per-identifier counts, timing, last payload and changed bytes, fed batch by batch."""

    def __init__(self, max_ids: int = MAX_IDS) -> None:
        self.max_ids = max_ids
        self.reset()

    def reset(self) -> None:
        self.keys: U64 = np.empty(0, np.uint64)  # sorted: id | extended << 32
        self.count = np.empty(0, np.int64)
        self.first_ts: F64 = np.empty(0, np.float64)
        self.prev_ts: F64 = np.empty(0, np.float64)
        self.last_ts: F64 = np.empty(0, np.float64)
        self.dlc: U8 = np.empty(0, np.uint8)
        self.remote = np.empty(0, np.bool_)
        self.data: U8 = np.empty((0, CLASSIC_WIDTH), np.uint8)
        self.changed_at: F64 = np.empty((0, CLASSIC_WIDTH), np.float64)
        self.error_frames = 0
        self.untracked = 0

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    # -- feeding --------------------------------------------------------------------------
    def feed(self, batch: FrameBatch) -> None:
        if not len(batch):
            return
        error = batch.is_error
        self.error_frames += int(error.sum())
        frames = batch.take(~error) if error.any() else batch
        if not len(frames):
            return
        keys = frames.can_id.astype(np.uint64) | np.where(
            frames.is_extended, EXTENDED_BIT, np.uint64(0)
        )
        self._add_keys(np.unique(keys))
        known = np.isin(keys, self.keys)
        if not known.all():
            self.untracked += int((~known).sum())
            frames, keys = frames.take(known), keys[known]
            if not len(frames):
                return
        self._widen(frames.data.shape[1])
        self._update(frames, keys)

    def _add_keys(self, unique: U64) -> None:
        new = unique[~np.isin(unique, self.keys)]
        room = self.max_ids - len(self)
        if room <= 0 or not new.size:
            return
        new = new[:room]
        merged = np.concatenate([self.keys, new])
        order = np.argsort(merged, kind="stable")
        n_new = new.shape[0]
        width = self.data.shape[1]
        self.keys = merged[order]
        self.count = np.concatenate([self.count, np.zeros(n_new, np.int64)])[order]
        nan = np.full(n_new, math.nan)
        self.first_ts = np.concatenate([self.first_ts, nan])[order]
        self.prev_ts = np.concatenate([self.prev_ts, nan])[order]
        self.last_ts = np.concatenate([self.last_ts, nan])[order]
        self.dlc = np.concatenate([self.dlc, np.zeros(n_new, np.uint8)])[order]
        self.remote = np.concatenate([self.remote, np.zeros(n_new, np.bool_)])[order]
        self.data = np.concatenate([self.data, np.zeros((n_new, width), np.uint8)])[order]
        self.changed_at = np.concatenate([self.changed_at, np.full((n_new, width), -math.inf)])[
            order
        ]

    def _widen(self, width: int) -> None:
        if width <= self.data.shape[1]:
            return
        n, old = self.data.shape
        data = np.zeros((n, width), np.uint8)
        data[:, :old] = self.data
        changed = np.full((n, width), -math.inf)
        changed[:, :old] = self.changed_at
        self.data, self.changed_at = data, changed

    def _update(self, frames: FrameBatch, keys: U64) -> None:
        order = np.argsort(keys, kind="stable")  # by id, arrival order kept within an id
        keys = keys[order]
        ts = frames.timestamp[order]
        width = self.data.shape[1]
        data = np.zeros((len(order), width), np.uint8)
        data[:, : frames.data.shape[1]] = frames.data[order]
        dlc = frames.dlc[order]
        remote = frames.is_remote[order]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        counts = np.diff(np.r_[starts, len(keys)])
        ends = starts + counts - 1
        rows = np.searchsorted(self.keys, keys[starts])
        seen_before = self.count[rows] > 0

        # The frame before each frame of the same id: the previous one in the group, or
        # the tracker's last frame of that id for a group's first frame.
        previous = np.empty_like(data)
        previous[1:] = data[:-1]
        previous[starts] = self.data[rows]
        prev_dlc = np.empty_like(dlc)
        prev_dlc[1:] = dlc[:-1]
        prev_dlc[starts] = self.dlc[rows]
        compare = np.ones(len(keys), np.bool_)
        compare[starts] = seen_before  # an id's very first frame changes nothing
        byte_index = np.arange(width)
        changed = (data != previous) | (
            (byte_index[None, :] < dlc[:, None]) != (byte_index[None, :] < prev_dlc[:, None])
        )
        changed &= compare[:, None]
        change_ts = np.where(changed, ts[:, None], -math.inf)
        latest_change = np.maximum.reduceat(change_ts, starts, axis=0)

        last_ts = ts[ends]
        prev_in_group = np.where(counts > 1, ts[ends - 1], self.last_ts[rows])
        self.prev_ts[rows] = prev_in_group
        self.first_ts[rows] = np.where(seen_before, self.first_ts[rows], ts[starts])
        self.last_ts[rows] = last_ts
        self.count[rows] += counts
        self.data[rows] = data[ends]
        self.dlc[rows] = dlc[ends]
        self.remote[rows] = remote[ends]
        self.changed_at[rows] = np.maximum(self.changed_at[rows], latest_change)

    # -- reading --------------------------------------------------------------------------
    def snapshot(self, now: float, hold: float = CHANGE_HOLD_S) -> list[IdRow]:
        """Every tracked identifier, standard before extended, by id."""
        seen = self.count > 0
        rows: list[IdRow] = []
        interval = self.last_ts - self.prev_ts
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (self.last_ts - self.first_ts) / (self.count - 1)
        recent = self.changed_at >= now - hold
        for i in np.flatnonzero(seen).tolist():
            n = int(self.dlc[i])
            key = int(self.keys[i])
            count = int(self.count[i])
            shown = 0 if self.remote[i] else n
            rows.append(
                IdRow(
                    can_id=key & 0xFFFFFFFF,
                    extended=bool(key >> 32),
                    count=count,
                    first_ts=float(self.first_ts[i]),
                    last_ts=float(self.last_ts[i]),
                    last_interval=float(interval[i]) if count > 1 else math.nan,
                    mean_period=float(mean[i]) if count > 1 else math.nan,
                    dlc=n,
                    data=bytes(self.data[i, :shown]),
                    changed=tuple(bool(x) for x in recent[i, :shown]),
                    remote=bool(self.remote[i]),
                )
            )
        rows.sort(key=lambda r: (r.extended, r.can_id))
        return rows
