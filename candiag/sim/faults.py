"""Fault injection for the simulated charger: the ``Fault`` value, its command-line
syntax, and the SocketCAN error-frame payloads the faults produce.

Error frames follow the SocketCAN layout (``linux/can/error.h``, whose constants are in
:mod:`candiag.socketcan_errors`; docs/can-errors.md §1):
the class bits go in ``can_id`` (flag ``FLAG_ERROR``), ``data[1]`` holds the
controller state, ``data[2]``/``data[3]`` the protocol-violation type and
location, ``data[6]``/``data[7]`` TEC/REC with ``CAN_ERR_CNT``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from candiag.errors import InputError
from candiag.ingest.frames import FLAG_ERROR, FrameBatch
from candiag.socketcan_errors import (
    CAN_ERR_ACK,
    CAN_ERR_BUSERROR,
    CAN_ERR_CNT,
    CAN_ERR_LOSTARB,
    CAN_ERR_PROT,
    CAN_ERR_TRX,
    CAN_ERR_TX_TIMEOUT,
    CONTROLLER_FLAGS,
    ERROR_PASSIVE_THRESHOLD,
    ERROR_WARNING_THRESHOLD,
    PROTOCOL_LOCATION,
    PROTOCOL_TYPE_FLAGS,
    TRANSCEIVER_CANH,
)

# The protocol-violation types the simulator injects (data[2]), and where each typically shows
# up (data[3]; a form error is a fixed-form field out of place).  "crc" has no type bit: the
# kernel reports a CRC error as an unspecified type at the CRC sequence.
PROT_TYPES = {
    name: PROTOCOL_TYPE_FLAGS[name] for name in ("bit", "form", "stuff", "bit0", "bit1", "overload")
}
PROT_DEFAULT_LOCATION = {
    "bit": PROTOCOL_LOCATION["id28_21"],
    "form": PROTOCOL_LOCATION["crc_del"],
    "stuff": PROTOCOL_LOCATION["data"],
    "bit0": PROTOCOL_LOCATION["ack"],
    "bit1": PROTOCOL_LOCATION["data"],
    "overload": PROTOCOL_LOCATION["unspec"],
    "crc": PROTOCOL_LOCATION["crc_seq"],
}
TRX_CANH_NO_WIRE = {name: value for value, name in TRANSCEIVER_CANH.items()}["canh_no_wire"]

FAULT_KINDS = (
    "error_frames",
    "controller",
    "bus_off",
    "module_silent",
    "duplicate_address",
    "firmware_mismatch",
    "wrong_bitrate",
    "overload",
    "jitter",
    "contactor_mismatch",
    "cooling_no_flow",
    "meter_reversed",
    # Request/response protocols only (candiag simulate --protocol; docs/protocols.md).
    "controller_silent",
    "rejected_requests",
    "slow_replies",
)
#: Fault kinds only the protocol simulators (``--protocol``) play.
PROTOCOL_ONLY_FAULT_KINDS = ("controller_silent", "rejected_requests", "slow_replies")
ERROR_FRAME_CLASSES = (
    "ack",
    "stuff",
    "form",
    "bit",
    "bit0",
    "bit1",
    "crc",
    "overload",
    "lost_arbitration",
    "transceiver",
    "tx_timeout",
)

ParamValue = str | float


@dataclass(frozen=True)
class Fault:
    """A fault active from ``start`` for ``duration`` seconds of simulated time.

    ``start`` is relative to the simulation start; ``duration`` ``None`` means
    "until the end".  ``params`` are kind-specific (``module``, ``class``,
    ``rate``, ``load`` ...; see docs/reference-bus.md).
    """

    kind: str
    start: float = 0.0
    duration: float | None = None
    params: Mapping[str, ParamValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise InputError(
                f"unknown fault kind {self.kind!r}; choose one of {', '.join(FAULT_KINDS)}"
            )
        if self.start < 0 or (self.duration is not None and self.duration <= 0):
            raise InputError(
                f"fault {self.kind}: start must be >= 0 and duration > 0 "
                f"(got start={self.start}, duration={self.duration})"
            )

    def window(self, t0: float) -> tuple[float, float]:
        """Absolute ``[begin, end)`` given the simulation start ``t0``."""
        begin = t0 + self.start
        end = math.inf if self.duration is None else begin + self.duration
        return begin, end

    def number(self, key: str, default: float) -> float:
        value = self.params.get(key, default)
        try:
            return float(value)
        except ValueError:
            raise InputError(
                f"fault {self.kind}: parameter {key}={value!r} must be a number"
            ) from None

    def integer(self, key: str, default: int) -> int:
        value = self.params.get(key, default)
        try:
            return int(str(value), 0)
        except ValueError:
            raise InputError(
                f"fault {self.kind}: parameter {key}={value!r} must be an integer "
                "(decimal or 0x hex)"
            ) from None

    def text(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = str(self.params.get(key, default))
        if value not in choices:
            raise InputError(
                f"fault {self.kind}: parameter {key}={value!r}; choose one of {', '.join(choices)}"
            )
        return value


def parse_fault(spec: str) -> Fault:
    """Parse ``KIND[@START[+DURATION]][:key=value,...]`` (seconds, simulated time).

    >>> parse_fault("error_frames@10+5:class=ack,rate=20").params["class"]
    'ack'
    """
    head, _, tail = spec.partition(":")
    kind, _, timing = head.partition("@")
    start_text, _, duration_text = timing.partition("+")
    try:
        start = float(start_text) if start_text else 0.0
        duration = float(duration_text) if duration_text else None
    except ValueError:
        raise InputError(
            f"--fault {spec!r}: START and DURATION must be seconds, as in KIND@10+5"
        ) from None
    params: dict[str, ParamValue] = {}
    for item in filter(None, tail.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--fault {spec!r}: parameter {item!r} must be key=value")
        params[key.strip()] = value.strip()
    return Fault(kind=kind.strip(), start=start, duration=duration, params=params)


def error_frame_batch(
    timestamps: npt.NDArray[np.float64],
    class_bits: int | npt.NDArray[np.uint32],
    data: npt.NDArray[np.uint8] | None,
    channel: str,
) -> FrameBatch:
    """Error frames (8 payload bytes each, zero unless ``data`` given)."""
    n = len(timestamps)
    payload = np.zeros((n, 8), np.uint8) if data is None else data
    return FrameBatch(
        timestamp=np.asarray(timestamps, np.float64),
        can_id=np.broadcast_to(np.asarray(class_bits, np.uint32), (n,)).copy(),
        flags=np.full(n, FLAG_ERROR, np.uint8),
        dlc=np.full(n, 8, np.uint8),
        data=payload,
        channel=np.zeros(n, np.int16),
        channels=[channel],
    )


def error_class_payload(name: str, n: int, params: Fault) -> tuple[int, npt.NDArray[np.uint8]]:
    """Class bits and payload rows of ``n`` error frames of the named kind."""
    data = np.zeros((n, 8), np.uint8)
    if name == "ack":
        bits = CAN_ERR_ACK | CAN_ERR_BUSERROR
    elif name in PROT_TYPES or name == "crc":
        bits = CAN_ERR_PROT | CAN_ERR_BUSERROR
        data[:, 2] = PROT_TYPES.get(name, 0x00)
        data[:, 3] = params.integer("loc", PROT_DEFAULT_LOCATION[name])
    elif name == "lost_arbitration":
        bits = CAN_ERR_LOSTARB
        data[:, 0] = params.integer("bit", 0)
    elif name == "transceiver":
        bits = CAN_ERR_TRX
        data[:, 4] = params.integer("trx", TRX_CANH_NO_WIRE)
    else:  # tx_timeout
        bits = CAN_ERR_TX_TIMEOUT
    if "tec" in params.params or "rec" in params.params:
        bits |= CAN_ERR_CNT
        data[:, 6] = min(params.integer("tec", 0), 255)
        data[:, 7] = min(params.integer("rec", 0), 255)
    return bits, data


def controller_payload(state: str, tec: int, rec: int) -> npt.NDArray[np.uint8]:
    """``CAN_ERR_CRTL|CAN_ERR_CNT`` payload for a state change (warning/passive/active)."""
    data = np.zeros(8, np.uint8)
    if state in ("warning", "passive"):
        limit = ERROR_WARNING_THRESHOLD if state == "warning" else ERROR_PASSIVE_THRESHOLD
        tx = CONTROLLER_FLAGS[f"tx_{state}"] if tec >= limit else 0
        rx = CONTROLLER_FLAGS[f"rx_{state}"] if rec >= limit else 0
        data[1] = tx | rx
    else:
        data[1] = CONTROLLER_FLAGS["active"]
    data[6] = min(tec, 255)
    data[7] = min(rec, 255)
    return data


def regular_times(
    begin: float, end: float, rate: float, t0: float, t1: float
) -> npt.NDArray[np.float64]:
    """Times ``begin + (k + 0.5) / rate`` inside ``[max(begin, t0), min(end, t1))``.

    Deterministic (not Poisson) so the number of frames in a window is exact
    and does not depend on how the simulation is cut into chunks.
    """
    lo, hi = max(begin, t0), min(end, t1)
    if rate <= 0 or hi <= lo:
        return np.empty(0, np.float64)
    k_lo = math.ceil((lo - begin) * rate - 0.5)
    k_hi = math.ceil((hi - begin) * rate - 0.5)
    times = begin + (np.arange(k_lo, k_hi, dtype=np.float64) + 0.5) / rate
    return times[(times >= lo) & (times < hi)]
