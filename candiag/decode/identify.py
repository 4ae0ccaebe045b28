"""Which DBCs describe a capture: score a database against a sample of its traffic.

Without ``--dbc``, candiag must not decode a vehicle's bus with the reference charger's
DBCs (a vehicle's ``0x300`` is not a cooling unit): a DBC file is applied only where the
traffic matches it, judged on evidence that random traffic rarely shows together:

* its messages' identifiers appear (``seen`` of ``messages``), with their declared
  length (``length_ok``: share of those frames whose DLC is the message length);
* their period agrees with the declared cycle time (``period_ok``: share of senders whose
  mean period is between 0.5 and 1.5 cycle times, over the messages whose cycle is declared);
* their decoded values lie within the ranges the DBC declares (``in_range``).

All of it is vectorized over the sample (one ``match``, one decode, ``bincount`` per
message).  The same scores serve later protocol identification (``candiag probe``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from candiag.decode.dbc import (
    ChargerDatabase,
    database_of,
    expand_dbc_paths,
    load_dbc_files,
    reference_dbc_dir,
)
from candiag.decode.decoder import BatchDecoder
from candiag.ingest.frames import FrameBatch

# What a matching DBC must show (see the module docstring).
MIN_FRAMES = 5
MIN_SEEN_SHARE = 0.5
MIN_LENGTH_OK = 0.9
MIN_PERIOD_OK = 0.5
MIN_IN_RANGE = 0.9
PERIOD_LOW, PERIOD_HIGH = 0.5, 1.5
# Periods a sender needs in the sample before its mean period is judged.
MIN_PERIODS = 2


@dataclass(frozen=True)
class DbcMatch:
    """How well one DBC file describes a sample of traffic."""

    source: str
    messages: int
    seen: int
    frames: int
    sample_frames: int
    length_ok: float
    period_ok: float | None  # None: no declared cycle to compare with
    in_range: float | None  # None: no declared range to compare with
    matched: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.source,
            "matched": self.matched,
            "messages": self.messages,
            "messages_seen": self.seen,
            "frames": self.frames,
            "sample_frames": self.sample_frames,
            "frames_explained": round(self.frames / self.sample_frames, 4)
            if self.sample_frames
            else 0.0,
            "length_ok": round(self.length_ok, 4),
            "period_ok": None if self.period_ok is None else round(self.period_ok, 4),
            "in_range": None if self.in_range is None else round(self.in_range, 4),
            "reason": self.reason,
        }


def score_database(db: ChargerDatabase, sample: FrameBatch, source: str = "") -> DbcMatch:
    """Score ``db`` against the data frames of ``sample`` (see the module docstring)."""
    data = sample.take(sample.is_data) if len(sample) else sample
    n = len(data)
    message, node = db.match(data.can_id, data.is_extended) if n else (np.empty(0, np.int32),) * 2
    hit = message >= 0
    frames = int(np.count_nonzero(hit))
    seen = int(np.unique(message[hit]).size)
    lengths = np.array([m.length for m in db.messages] or [0], np.int64)
    length_ok = float(np.mean(data.dlc[hit] == lengths[message[hit]])) if frames else 0.0
    period_ok = _period_share(db, data, message, node) if frames else None
    in_range = _in_range_share(db, data) if frames else None
    matched, reason = _verdict(len(db), seen, frames, length_ok, period_ok, in_range)
    return DbcMatch(
        source=source or ", ".join(db.sources),
        messages=len(db),
        seen=seen,
        frames=frames,
        sample_frames=n,
        length_ok=length_ok,
        period_ok=period_ok,
        in_range=in_range,
        matched=matched,
        reason=reason,
    )


def _period_share(
    db: ChargerDatabase, data: FrameBatch, message: np.ndarray[Any, Any], node: np.ndarray[Any, Any]
) -> float | None:
    """Share of senders (message, node, channel) whose mean period is 0.5..1.5 cycle times.

    The *mean* period (span over count) and not each interval: a host that stamps frames
    in bursts (a USB adapter, a loaded VM) scatters the intervals but not their mean.
    """
    cycles = np.array([(m.cycle_time_ms or 0) / 1000.0 for m in db.messages] or [0.0])
    rows = np.flatnonzero((message >= 0) & (cycles[np.maximum(message, 0)] > 0))
    if rows.size < 2:
        return None
    key = (
        (message[rows].astype(np.int64) << 24)
        | ((node[rows].astype(np.int64) & 0xFFFF) << 8)
        | (data.channel[rows].astype(np.int64) & 0xFF)
    )
    keys, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    ts = data.timestamp[rows]
    first = np.full(keys.size, np.inf)
    last = np.full(keys.size, -np.inf)
    np.minimum.at(first, inverse, ts)
    np.maximum.at(last, inverse, ts)
    judged = counts >= MIN_PERIODS + 1
    if not judged.any():
        return None
    cycle = cycles[(keys[judged] >> 24).astype(np.intp)]
    mean = (last[judged] - first[judged]) / (counts[judged] - 1)
    ratio = mean / cycle
    return float(np.mean((ratio >= PERIOD_LOW) & (ratio <= PERIOD_HIGH)))


def _in_range_share(db: ChargerDatabase, data: FrameBatch) -> float | None:
    """Share of decoded values within the DBC's declared ranges (signals that declare one)."""
    result = BatchDecoder(db).decode(data)
    inside = 0
    total = 0
    for decoded in result.messages.values():
        for sig in decoded.message.signals:
            lo, hi = sig.minimum, sig.maximum
            # "0|0" is how many DBC editors write "no range".
            if lo is None or hi is None or (lo == 0 and hi == 0) or hi < lo:
                continue
            values = np.asarray(decoded.signals[sig.name], np.float64)[decoded.present[sig.name]]
            if not values.size:
                continue
            tol = 1e-9 * max(abs(lo), abs(hi), 1.0)
            inside += int(np.count_nonzero((values >= lo - tol) & (values <= hi + tol)))
            total += int(values.size)
    return inside / total if total else None


def _verdict(
    messages: int,
    seen: int,
    frames: int,
    length_ok: float,
    period_ok: float | None,
    in_range: float | None,
) -> tuple[bool, str]:
    if frames < MIN_FRAMES:
        return False, f"{frames} frames with its identifiers (at least {MIN_FRAMES} needed)"
    if seen < MIN_SEEN_SHARE * messages:
        return False, f"only {seen} of its {messages} messages appear"
    if length_ok < MIN_LENGTH_OK:
        return False, f"only {length_ok:.0%} of the frames have the declared length"
    if period_ok is not None and period_ok < MIN_PERIOD_OK:
        return False, f"only {period_ok:.0%} of the periods match the declared cycle times"
    if in_range is not None and in_range < MIN_IN_RANGE:
        return False, f"only {in_range:.0%} of the decoded values lie in the declared ranges"
    return True, (
        f"{seen} of {messages} messages seen with their length"
        + ("" if period_ok is None else f", {period_ok:.0%} of periods on cycle")
        + ("" if in_range is None else f", {in_range:.0%} of values in range")
    )


def select_reference_dbcs(
    sample: FrameBatch, paths: Sequence[str | os.PathLike[str]] = ()
) -> tuple[ChargerDatabase, list[DbcMatch]]:
    """The reference DBC files (default: the shipped reference charger's) that ``sample``
    matches, merged into one database, and every file's score (matched or not)."""
    files = expand_dbc_paths(list(paths) or [reference_dbc_dir()])
    loaded = load_dbc_files(files)  # each file read once, scored alone, merged if chosen
    matches = [
        score_database(database_of([item]), sample, source=Path(item[0]).name) for item in loaded
    ]
    chosen = [item for item, m in zip(loaded, matches, strict=True) if m.matched]
    if chosen:
        return database_of(chosen), matches
    return ChargerDatabase([], []), matches
