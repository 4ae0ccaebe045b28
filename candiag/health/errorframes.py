"""SocketCAN error frames: classes, payload sub-fields and error counters, vectorized.

Owns the decoding of ``linux/can/error.h`` error frames (docs/can-errors.md §1) as they sit in a
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
from typing import Any

import numpy as np
import numpy.typing as npt

from candiag.ingest.frames import FrameBatch

# The ten SocketCAN classes, in bit order (CAN_ERR_TX_TIMEOUT 0x001 ... CAN_ERR_CNT 0x200).
SOCKETCAN_CLASSES: tuple[str, ...] = (
    "tx_timeout",
    "lost_arbitration",
    "controller",
    "protocol",
    "transceiver",
    "ack",
    "bus_off",
    "bus_error",
    "restarted",
    "counters",
)
# An error frame without any class bit: its source did not record the kind of error.
UNCLASSIFIED = "unclassified"
# Every class candiag counts.  These names are used everywhere: JSON keys, the metric label
# ``class``, window columns.  Only the first ten are bits of ``can_id``.
ERROR_CLASSES: tuple[str, ...] = (*SOCKETCAN_CLASSES, UNCLASSIFIED)
CLASS_BIT: dict[str, int] = {name: 1 << i for i, name in enumerate(SOCKETCAN_CLASSES)}
CAN_ERR_CLASS_MASK = (1 << len(SOCKETCAN_CLASSES)) - 1
CAN_ERR_TX_TIMEOUT = 0x001
CAN_ERR_LOSTARB = 0x002
CAN_ERR_CRTL = 0x004
CAN_ERR_PROT = 0x008
CAN_ERR_TRX = 0x010
CAN_ERR_ACK = 0x020
CAN_ERR_BUSOFF = 0x040
CAN_ERR_BUSERROR = 0x080
CAN_ERR_RESTARTED = 0x100
CAN_ERR_CNT = 0x200

# data[1] for CAN_ERR_CRTL: bit flags.
CONTROLLER_FLAGS: dict[str, int] = {
    "rx_overflow": 0x01,
    "tx_overflow": 0x02,
    "rx_warning": 0x04,
    "tx_warning": 0x08,
    "rx_passive": 0x10,
    "tx_passive": 0x20,
    "active": 0x40,
}
# data[2] for CAN_ERR_PROT: bit flags.
PROTOCOL_TYPE_FLAGS: dict[str, int] = {
    "bit": 0x01,
    "form": 0x02,
    "stuff": 0x04,
    "bit0": 0x08,
    "bit1": 0x10,
    "overload": 0x20,
    "active": 0x40,
    "tx": 0x80,
}
# data[3] for CAN_ERR_PROT: one value (CAN_ERR_PROT_LOC_*).  These are the SJA1000
# error-code-capture segment numbers; the four marked "sja1000" are segments the kernel
# table does not name but PEAK reports (PCAN-Basic "Error Frames"), see health/pcan.py.
PROTOCOL_LOCATIONS: dict[int, str] = {
    0x00: "unspec",
    0x02: "id28_21",
    0x03: "sof",
    0x04: "srtr",
    0x05: "ide",
    0x06: "id20_18",
    0x07: "id17_13",
    0x08: "crc_seq",
    0x09: "res0",
    0x0A: "data",
    0x0B: "dlc",
    0x0C: "rtr",
    0x0D: "res1",
    0x0E: "id04_00",
    0x0F: "id12_05",
    0x11: "active_error_flag",  # sja1000
    0x12: "interm",
    0x13: "tolerate_dominant",  # sja1000
    0x17: "error_delimiter",  # sja1000
    0x18: "crc_del",
    0x19: "ack",
    0x1A: "eof",
    0x1B: "ack_del",
    0x1C: "overload_flag",  # sja1000
}
# data[4] for CAN_ERR_TRX: CANH state in the low nibble, CANL state in the high nibble.
TRANSCEIVER_CANH: dict[int, str] = {
    0x04: "canh_no_wire",
    0x05: "canh_short_to_bat",
    0x06: "canh_short_to_vcc",
    0x07: "canh_short_to_gnd",
}
TRANSCEIVER_CANL: dict[int, str] = {
    0x40: "canl_no_wire",
    0x50: "canl_short_to_bat",
    0x60: "canl_short_to_vcc",
    0x70: "canl_short_to_gnd",
    0x80: "canl_short_to_canh",
}

BoolMatrix = npt.NDArray[np.bool_]
_CLASS_BITS = np.array([1 << i for i in range(len(SOCKETCAN_CLASSES))], np.uint32)


def error_rows(batch: FrameBatch) -> npt.NDArray[np.intp]:
    """Indices of the error frames of ``batch``."""
    return np.flatnonzero(batch.is_error)


def unclassified_mask(can_id: npt.NDArray[np.uint32]) -> npt.NDArray[np.bool_]:
    """Which of these error-frame identifiers carry no class bit (kind not recorded)."""
    return np.asarray((can_id & CAN_ERR_CLASS_MASK) == 0, np.bool_)


def class_matrix(batch: FrameBatch) -> BoolMatrix:
    """``bool[len(batch), 11]``: which classes each frame carries (all False for non-error rows).

    Column order is :data:`ERROR_CLASSES` (the last column: ``unclassified``); this is what
    the sliding windows add up.
    """
    bits = np.empty((len(batch), len(ERROR_CLASSES)), np.bool_)
    bits[:, :-1] = (batch.can_id[:, None] & _CLASS_BITS[None, :]) != 0
    bits[:, -1] = unclassified_mask(batch.can_id)
    bits &= batch.is_error[:, None]
    return bits


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

    def to_json(self) -> dict[str, Any]:
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


def describe_error_frame(can_id: int, data: bytes) -> list[str]:
    """Human-readable classes of one error frame, in the spirit of ``candump -e``.

    For logs and the live view (one frame at a time); batch code uses :class:`ErrorFrameSummary`.
    """
    payload = bytes(data[:8]).ljust(8, b"\0")
    if not can_id & CAN_ERR_CLASS_MASK:
        return [UNCLASSIFIED]
    parts: list[str] = []
    for name, bit in CLASS_BIT.items():
        if not can_id & bit:
            continue
        if bit == CAN_ERR_LOSTARB:
            name += f"{{at bit {payload[0]}}}"
        elif bit == CAN_ERR_CRTL:
            name += "{" + ",".join(n for n, b in CONTROLLER_FLAGS.items() if payload[1] & b) + "}"
        elif bit == CAN_ERR_PROT:
            types = ",".join(n for n, b in PROTOCOL_TYPE_FLAGS.items() if payload[2] & b)
            where = PROTOCOL_LOCATIONS.get(payload[3], f"0x{payload[3]:02x}")
            name += f"{{{{{types}}}{{{where}}}}}"
        elif bit == CAN_ERR_TRX:
            name += f"{{0x{payload[4]:02x}}}"
        parts.append(name)
    if can_id & CAN_ERR_CNT or payload[6] or payload[7]:
        parts.append(f"tec={payload[6]} rec={payload[7]}")
    return parts
