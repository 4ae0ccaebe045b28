"""SocketCAN error frames: classes, payload sub-fields and error counters, vectorized.

Owns the decoding of ``linux/can/error.h`` error frames (docs/can-errors.md §1; the layout's
constants are :mod:`candiag.socketcan_errors`) as they sit in a
:class:`~candiag.ingest.frames.FrameBatch`: ``can_id`` holds the class bits, ``data`` the
8 payload bytes.  We decode it ourselves because neither python-can nor cantools has a
decoder (python-can only sets ``is_error_frame``; docs/can-errors.md §4.1), and because counting
per class over whole batches is a handful of numpy reductions, not a per-frame loop.

One frame may carry several classes (e.g. ``CAN_ERR_PROT | CAN_ERR_BUSERROR | CAN_ERR_CNT``);
each class is counted.  Sub-fields are only read when their class bit is set, as the kernel
leaves the other bytes unspecified.

Besides the ten SocketCAN classes there is one more: ``unclassified``, an error frame with no
class bit at all.  Capture formats that record *that* an error frame happened but not *what
kind* (an ASC ``ErrorFrame`` line, a TRC ``ER`` row; docs/capture-formats.md) are read as such
frames (``can_id`` 0, zero payload), so they are counted and reported, never silently dropped
and never decoded as classes they do not carry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from candiag.health.jsontypes import JsonObject
from candiag.ingest.frames import FrameBatch
from candiag.socketcan_errors import (
    CAN_ERR_CLASS_MASK,
    CAN_ERR_CNT,
    CAN_ERR_CRTL,
    CAN_ERR_LOSTARB,
    CAN_ERR_PROT,
    CAN_ERR_TRX,
    CLASS_BIT,
    CONTROLLER_FLAGS,
    PROTOCOL_LOCATIONS,
    PROTOCOL_TYPE_FLAGS,
    SOCKETCAN_CLASSES,
    TRANSCEIVER_CANH,
    TRANSCEIVER_CANL,
)

# An error frame without any class bit: its source did not record the kind of error.
UNCLASSIFIED = "unclassified"
# Every class candiag counts.  These names are used everywhere: JSON keys, the metric label
# ``class``, window columns.  Only the first ten are bits of ``can_id``.
ERROR_CLASSES: tuple[str, ...] = (*SOCKETCAN_CLASSES, UNCLASSIFIED)


def error_rows(batch: FrameBatch) -> npt.NDArray[np.intp]:
    """Indices of the error frames of ``batch``."""
    return np.flatnonzero(batch.is_error)


def unclassified_mask(can_id: npt.NDArray[np.uint32]) -> npt.NDArray[np.bool_]:
    """Which of these error-frame identifiers carry no class bit (kind not recorded)."""
    return np.asarray((can_id & CAN_ERR_CLASS_MASK) == 0, np.bool_)


def _flag_counts(values: npt.NDArray[np.uint8], flags: dict[str, int]) -> dict[str, int]:
    """Count, for each named bit flag, the values that have it (bincount over 256 byte values)."""
    hist = np.bincount(values, minlength=256)
    byte_values = np.arange(256)
    counts = {name: int(hist[(byte_values & bit) != 0].sum()) for name, bit in flags.items()}
    counts["unspec"] = int(hist[0])
    return counts


def _value_counts(values: npt.NDArray[np.uint8], names: dict[int, str]) -> dict[str, int]:
    """Count byte values by name; values outside the table are counted as ``other``."""
    hist = np.bincount(values, minlength=256)
    counts = {name: int(hist[value]) for value, name in names.items()}
    known = np.zeros(256, bool)
    known[list(names)] = True
    counts["other"] = int(hist[~known].sum())
    return counts


def _transceiver_counts(values: npt.NDArray[np.uint8]) -> dict[str, int]:
    hist = np.bincount(values, minlength=256)
    byte_values = np.arange(256)
    counts = {"unspec": int(hist[0])}
    for value, name in TRANSCEIVER_CANH.items():
        counts[name] = int(hist[(byte_values & 0x0F) == value].sum())
    for value, name in TRANSCEIVER_CANL.items():
        counts[name] = int(hist[(byte_values & 0xF0) == value].sum())
    return counts


def _merge(into: dict[str, int], more: dict[str, int]) -> None:
    for key, value in more.items():
        into[key] = into.get(key, 0) + value


@dataclass
class ErrorFrameSummary:
    """Running totals of error frames for one bus; feed batches with :meth:`update`.

    TEC/REC: the kernel flags frames carrying counters with ``CAN_ERR_CNT``; can-utils also
    prints data[6]/data[7] when they are non-zero without the flag (docs/can-errors.md §5.2).  Both
    are kept apart: ``tec_*``/``rec_*`` come from flagged frames only, ``unflagged_*`` from
    the others, and ``counter_frames_flagged``/``counter_frames_unflagged`` say how many of
    each were seen.
    """

    error_frames: int = 0
    by_class: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ERROR_CLASSES, 0))
    controller: dict[str, int] = field(default_factory=dict)
    protocol_type: dict[str, int] = field(default_factory=dict)
    protocol_location: dict[str, int] = field(default_factory=dict)
    transceiver: dict[str, int] = field(default_factory=dict)
    lost_arbitration_bits: dict[int, int] = field(default_factory=dict)
    tec_max: int | None = None
    rec_max: int | None = None
    tec_last: int | None = None
    rec_last: int | None = None
    counter_frames_flagged: int = 0
    counter_frames_unflagged: int = 0
    unflagged_tec_last: int | None = None
    unflagged_rec_last: int | None = None
    first_timestamp: float | None = None
    last_timestamp: float | None = None

    def update(self, batch: FrameBatch) -> None:
        """Add the error frames of ``batch`` (other frames are ignored)."""
        rows = error_rows(batch)
        if rows.size == 0:
            return
        # Counters "last" must be the latest in time even if the batch is not sorted.
        rows = rows[np.argsort(batch.timestamp[rows], kind="stable")]
        can_id = batch.can_id[rows]
        data = batch.data[rows, :8]
        self.error_frames += int(rows.size)
        ts = batch.timestamp[rows]
        self.first_timestamp = _min_opt(self.first_timestamp, float(ts[0]))
        self.last_timestamp = _max_opt(self.last_timestamp, float(ts[-1]))
        for name, bit in CLASS_BIT.items():
            self.by_class[name] += int(np.count_nonzero(can_id & bit))
        self.by_class[UNCLASSIFIED] += int(np.count_nonzero(unclassified_mask(can_id)))
        self._update_subfields(can_id, data)
        self._update_counters(can_id, data)

    def _update_subfields(
        self, can_id: npt.NDArray[np.uint32], data: npt.NDArray[np.uint8]
    ) -> None:
        crtl = (can_id & CAN_ERR_CRTL) != 0
        _merge(self.controller, _flag_counts(data[crtl, 1], CONTROLLER_FLAGS))
        prot = (can_id & CAN_ERR_PROT) != 0
        _merge(self.protocol_type, _flag_counts(data[prot, 2], PROTOCOL_TYPE_FLAGS))
        _merge(self.protocol_location, _value_counts(data[prot, 3], PROTOCOL_LOCATIONS))
        trx = (can_id & CAN_ERR_TRX) != 0
        _merge(self.transceiver, _transceiver_counts(data[trx, 4]))
        lostarb = (can_id & CAN_ERR_LOSTARB) != 0
        hist = np.bincount(data[lostarb, 0], minlength=256)
        for bit_number in np.flatnonzero(hist):
            key = int(bit_number)
            self.lost_arbitration_bits[key] = self.lost_arbitration_bits.get(key, 0) + int(
                hist[bit_number]
            )

    def _update_counters(self, can_id: npt.NDArray[np.uint32], data: npt.NDArray[np.uint8]) -> None:
        flagged = (can_id & CAN_ERR_CNT) != 0
        unflagged = ~flagged & ((data[:, 6] | data[:, 7]) != 0)
        if flagged.any():
            tec = data[flagged, 6]
            rec = data[flagged, 7]
            self.counter_frames_flagged += int(flagged.sum())
            self.tec_max = max(self.tec_max or 0, int(tec.max()))
            self.rec_max = max(self.rec_max or 0, int(rec.max()))
            self.tec_last, self.rec_last = int(tec[-1]), int(rec[-1])
        if unflagged.any():
            self.counter_frames_unflagged += int(unflagged.sum())
            self.unflagged_tec_last = int(data[unflagged, 6][-1])
            self.unflagged_rec_last = int(data[unflagged, 7][-1])

    def to_json(self) -> JsonObject:
        """A JSON-ready dict; zero entries of the sub-field tables are left out."""
        return {
            "source": "error_frames",
            "error_frames": self.error_frames,
            "by_class": dict(self.by_class),
            "controller": _nonzero(self.controller),
            "protocol_type": _nonzero(self.protocol_type),
            "protocol_location": _nonzero(self.protocol_location),
            "transceiver": _nonzero(self.transceiver),
            "lost_arbitration_bits": {
                str(k): v for k, v in sorted(self.lost_arbitration_bits.items())
            },
            "counters": {
                "tec_max": self.tec_max,
                "rec_max": self.rec_max,
                "tec_last": self.tec_last,
                "rec_last": self.rec_last,
                "frames_flagged": self.counter_frames_flagged,
                "frames_unflagged_nonzero": self.counter_frames_unflagged,
                "unflagged_tec_last": self.unflagged_tec_last,
                "unflagged_rec_last": self.unflagged_rec_last,
            },
            "first_timestamp": self.first_timestamp,
            "last_timestamp": self.last_timestamp,
        }


def _nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}


def _min_opt(a: float | None, b: float) -> float:
    return b if a is None else min(a, b)


def _max_opt(a: float | None, b: float) -> float:
    return b if a is None else max(a, b)
