"""Error records of foreign capture formats, mapped to SocketCAN error frames where they can be.

A :class:`~candiag.ingest.frames.FrameBatch` error frame holds SocketCAN class bits in
``can_id`` and the SocketCAN payload in ``data`` (``linux/can/error.h``).  Other tools record
errors differently; each function here maps exactly what one record type carries, and
returns :data:`UNCLASSIFIED` (no class bit, zero payload) when the record does not say which
kind of error it was.  The identifier of the frame that was hit (a BLF ``CAN_ERROR_EXT``
``id``) is never put into the class bits.  Sources and reasoning: docs/capture-formats.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from candiag.socketcan_errors import (
    CAN_ERR_ACK,
    CAN_ERR_BUSERROR,
    CAN_ERR_BUSOFF,
    CAN_ERR_CNT,
    CAN_ERR_CRTL,
    CAN_ERR_PROT,
    CONTROLLER_FLAGS,
    PROTOCOL_TYPE_FLAGS,
)

# CAN_ERR_PROT_LOC_* values used below (linux/can/error.h).
LOC_UNSPEC = 0x00
LOC_CRC_SEQ = 0x08
LOC_ACK_DEL = 0x1B
# Error-counter thresholds (CAN_ERROR_WARNING_THRESHOLD, CAN_ERROR_PASSIVE_THRESHOLD).
WARNING_LIMIT = 96
PASSIVE_LIMIT = 128

_BIT = PROTOCOL_TYPE_FLAGS["bit"]
_FORM = PROTOCOL_TYPE_FLAGS["form"]
_STUFF = PROTOCOL_TYPE_FLAGS["stuff"]
_TX = PROTOCOL_TYPE_FLAGS["tx"]


@dataclass(frozen=True)
class ErrorRecord:
    """One error frame in SocketCAN layout: class bits and the 8 payload bytes."""

    can_id: int
    data: bytes

    @property
    def classified(self) -> bool:
        return self.can_id != 0


UNCLASSIFIED = ErrorRecord(0, bytes(8))


def _protocol(type_bits: int, location: int, tx: bool) -> ErrorRecord:
    data = bytearray(8)
    data[2] = type_bits | (_TX if tx else 0)
    data[3] = location
    return ErrorRecord(CAN_ERR_PROT | CAN_ERR_BUSERROR, bytes(data))


# SJA1000 ECC bits 7-6 (error code) -> SocketCAN protocol type ("other" has no type bit).
_SJA1000_CODE = (_BIT, _FORM, _STUFF, 0)


def from_sja1000_ecc(ecc: int) -> ErrorRecord:
    """The SJA1000 error code capture register (as Linux's ``sja1000`` driver maps it).

    Bits 7-6: 00 bit, 01 form, 10 stuff, 11 other error; bit 5: direction (1 = receive);
    bits 4-0: the segment, numbered as ``CAN_ERR_PROT_LOC_*``.
    """
    if not 0 <= ecc <= 0xFF:
        return UNCLASSIFIED
    return _protocol(_SJA1000_CODE[ecc >> 6], ecc & 0x1F, tx=not ecc & 0x20)


# Vector CAN-Core error code (bits 0-5 of ecc) -> (type bits, location).
_CAN_CORE_CODE: dict[int, tuple[int, int]] = {
    0: (_BIT, LOC_UNSPEC),
    1: (_FORM, LOC_UNSPEC),
    2: (_STUFF, LOC_UNSPEC),
    3: (0, LOC_UNSPEC),  # "other error"
    4: (0, LOC_CRC_SEQ),  # CRC error: the CRC sequence did not match
    5: (_FORM, LOC_ACK_DEL),  # ACK delimiter not recessive: a form error there
}
CAN_CORE_RX_NAK, CAN_CORE_TX_NAK, CAN_CORE_RX, CAN_CORE_TX = range(4)


def from_can_core(ecc: int) -> ErrorRecord:
    """Vector's CAN-Core error register: bits 0-5 error code, bits 6-7 direction.

    Direction 1 (TX NAK: our transmission was not acknowledged) is SocketCAN's ACK class;
    0 (RX NAK), 2 (RX) and 3 (TX) keep the protocol error of the code, TX marked as such.
    """
    code, direction = ecc & 0x3F, (ecc >> 6) & 0x3
    if not 0 <= ecc <= 0xFF or code not in _CAN_CORE_CODE:
        return UNCLASSIFIED
    if direction == CAN_CORE_TX_NAK:
        return ErrorRecord(CAN_ERR_ACK | CAN_ERR_BUSERROR, bytes(8))
    type_bits, location = _CAN_CORE_CODE[code]
    return _protocol(type_bits, location, tx=direction == CAN_CORE_TX)


SJA1000_ECC_VALID = 0x1
CAN_CORE_CODE_VALID = 0x2


def from_vector_flags(flags: int, ecc: int) -> ErrorRecord:
    """A Vector ``CAN_ERROR_EXT`` record (BLF) or ASC ``ErrorFrame Flags = ... Code = ...`` line.

    ``flags`` says how to read ``ecc``: bit 0 SJA1000 ECC valid, bit 1 CAN-Core code valid.
    Neither or both set: the record does not say unambiguously, so it stays unclassified.
    """
    kind = flags & (SJA1000_ECC_VALID | CAN_CORE_CODE_VALID)
    if kind == SJA1000_ECC_VALID:
        return from_sja1000_ecc(ecc)
    if kind == CAN_CORE_CODE_VALID:
        return from_can_core(ecc)
    return UNCLASSIFIED


def not_acknowledged() -> ErrorRecord:
    """A transmission nobody acknowledged (SocketCAN ``CAN_ERR_ACK``)."""
    return ErrorRecord(CAN_ERR_ACK | CAN_ERR_BUSERROR, bytes(8))


CONTROLLER_STATES = ("active", "warning", "passive", "bus_off")


def controller_state(state: str, tec: int | None, rec: int | None) -> ErrorRecord:
    """A controller state report (ASC chip status) as SocketCAN would send it.

    ``warning``/``passive`` set the RX and/or TX bit of data[1] by the counters that reach
    the limit; without counters (or counters below the limit) both bits are set: the side is
    not known.  ``bus_off`` is ``CAN_ERR_BUSOFF``.  TEC/REC, when given, go to data[6]/[7]
    with ``CAN_ERR_CNT``.
    """
    data = bytearray(8)
    can_id = 0
    if state == "bus_off":
        can_id = CAN_ERR_BUSOFF
    elif state == "active":
        can_id = CAN_ERR_CRTL
        data[1] = CONTROLLER_FLAGS["active"]
    elif state in ("warning", "passive"):
        can_id = CAN_ERR_CRTL
        limit = WARNING_LIMIT if state == "warning" else PASSIVE_LIMIT
        tx_bit, rx_bit = CONTROLLER_FLAGS[f"tx_{state}"], CONTROLLER_FLAGS[f"rx_{state}"]
        bits = (tx_bit if (tec or 0) >= limit else 0) | (rx_bit if (rec or 0) >= limit else 0)
        data[1] = bits or (tx_bit | rx_bit)
    else:
        raise ValueError(f"unknown controller state {state!r}")
    if tec is not None and rec is not None:
        can_id |= CAN_ERR_CNT
        data[6], data[7] = min(tec, 255), min(rec, 255)
    return ErrorRecord(can_id, bytes(data))


_STATE_WORDS = (
    (re.compile(r"bus\s*-?\s*off", re.IGNORECASE), "bus_off"),
    (re.compile(r"passive", re.IGNORECASE), "passive"),
    (re.compile(r"warning", re.IGNORECASE), "warning"),
    (re.compile(r"\bactive", re.IGNORECASE), "active"),
)


def state_from_words(text: str) -> str | None:
    """The controller state named in a status text ("error passive", "bus off"), else None."""
    for pattern, state in _STATE_WORDS:
        if pattern.search(text):
            return state
    return None
