"""PEAK PCAN (python-can ``pcan`` interface): status codes, exceptions and error frames.

Owns the mapping of PCAN's way of signalling errors into candiag's one model (bus states
of :mod:`candiag.health.busstate`, error classes of :mod:`candiag.health.errorframes`).
python-can's PCAN interface does not use SocketCAN error frames (docs/can-errors.md §4.2):

* ``recv`` checks the ``CAN_Read`` status: ``PCAN_ERROR_BUSLIGHT``/``BUSHEAVY`` are only logged
  as warnings, ``ILLDATA`` is ignored, and **anything else, bus-off included, raises
  ``PcanCanOperationError``** whose text is PCAN-Basic's error text (or
  ``"... Error-code's text (10h) couldn't be retrieved"``).  :func:`map_pcan_exception` turns
  that text back into a status; :func:`map_pcan_status` maps a ``bus.status()`` code.
* With ``PCAN_ALLOW_ERROR_FRAMES`` (python-can sets it) error frames arrive with
  ``PCAN_MESSAGE_ERRFRAME`` in PEAK's own layout (PCAN-Basic documentation, "Error Frames";
  SJA1000 error code capture): ``ID`` = 0 counters only, 1 bit, 2 form, 4 stuff, 8 other error;
  ``DATA[0]`` direction (0 transmit, 1 receive); ``DATA[1]`` bit-stream position (the SJA1000
  segment, the same numbers as SocketCAN's ``CAN_ERR_PROT_LOC_*``); ``DATA[2]`` REC;
  ``DATA[3]`` TEC.  :func:`pcan_error_frames_to_socketcan` rewrites them, vectorized, into
  SocketCAN layout so one summary and one state tracker serve both.
* ``auto_reset=True`` sets ``PCAN_BUSOFF_AUTORESET``: the driver leaves bus-off by itself
  (about 500 ms); the next status read says OK and maps back to error-active.

The constants are python-can's own (``can.interfaces.pcan.basic``), importable without
PEAK's library or hardware.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np

from candiag.ingest.frames import FLAG_ERROR, FrameBatch
from candiag.socketcan_errors import CAN_ERR_BUSERROR, CAN_ERR_CNT, CAN_ERR_PROT

# Importing python-can's pcan package logs "uptime library not available" when the optional
# `uptime` package is missing; that concerns live PCAN timestamps only, not the constants used
# here, and without a configured handler it would print on every candiag command.  A
# NullHandler stops only that last-resort printing; configured handlers still see the record.
logging.getLogger("can.pcan").addHandler(logging.NullHandler())

from can.interfaces.pcan import basic as pcb  # noqa: E402

# Severity order of the states a status can imply (later wins when several bits are set).
_SEVERITY = ("error_active", "error_warning", "error_passive", "bus_off", "down")

# Bus-condition bits: status bit -> (state, error class or None).
_BUS_BITS: dict[int, tuple[str, str | None]] = {
    # PEAK: "an error counter reached the 'light' limit" — errors are being counted but the
    # controller is below the warning limit; python-can only logs it.
    int(pcb.PCAN_ERROR_BUSLIGHT): ("error_active", "controller"),
    # BUSHEAVY is PCAN_ERROR_BUSWARNING: an error counter reached the warning limit (96).
    int(pcb.PCAN_ERROR_BUSHEAVY): ("error_warning", "controller"),
    int(pcb.PCAN_ERROR_BUSPASSIVE): ("error_passive", "controller"),
    int(pcb.PCAN_ERROR_BUSOFF): ("bus_off", "bus_off"),
}
# Frames lost: the controller's buffer (the interface) or PCAN's receive queue (we read late).
_DROP_BITS: dict[int, str] = {
    int(pcb.PCAN_ERROR_OVERRUN): "interface",
    int(pcb.PCAN_ERROR_QOVERRUN): "socket",
}
# Bits that say nothing about the bus (we never transmit; ILLDATA precedes an error frame).
_HARMLESS = (
    int(pcb.PCAN_ERROR_XMTFULL)
    | int(pcb.PCAN_ERROR_QXMTFULL)
    | int(pcb.PCAN_ERROR_QRCVEMPTY)
    | int(pcb.PCAN_ERROR_ILLDATA)
    | int(pcb.PCAN_ERROR_CAUTION)
)


@dataclass(frozen=True)
class PcanStatus:
    """What one PCAN status code (or exception) means for candiag."""

    code: int | None
    names: tuple[str, ...]  # PCAN_DICT_STATUS names of the bits set
    state: str | None  # a BUS_STATES name, or None when the code says nothing about it
    classes: tuple[str, ...]  # error classes to count (names of ERROR_CLASSES)
    dropped: str | None  # "interface" / "socket" when frames were lost, else None
    fatal: bool  # the adapter is unusable (driver/hardware problem): treat the bus as down
    source: str = "pcan"


def _bits(code: int) -> list[int]:
    return [1 << i for i in range(code.bit_length()) if code >> i & 1]


def _status_names(code: int) -> tuple[str, ...]:
    table = {int(k): v for k, v in pcb.PCAN_DICT_STATUS.items()}
    if code in table:
        return (table[code],)
    return tuple(table.get(bit, f"0x{bit:X}") for bit in _bits(code))


def map_pcan_status(code: int) -> PcanStatus:
    """Map a PCAN status code (``bus.status()``, ``CAN_Read``/``CAN_GetStatus`` result)."""
    code = int(code)
    if code == int(pcb.PCAN_ERROR_OK):
        return PcanStatus(code, ("OK",), "error_active", (), None, False)
    state: str | None = None
    classes: list[str] = []
    dropped: str | None = None
    fatal = False
    for bit in _bits(code):
        if bit in _BUS_BITS:
            implied, cls = _BUS_BITS[bit]
            if state is None or _SEVERITY.index(implied) > _SEVERITY.index(state):
                state = implied
            if cls and cls not in classes:
                classes.append(cls)
        elif bit in _DROP_BITS:
            dropped = dropped or _DROP_BITS[bit]
            if "controller" not in classes:
                classes.append("controller")
        elif not bit & _HARMLESS:
            fatal = True
    if fatal:
        state = "down"
    return PcanStatus(code, _status_names(code), state, tuple(classes), dropped, fatal)


# Words of PCAN-Basic's English error texts, most severe first.
_TEXT_HINTS: tuple[tuple[str, int], ...] = (
    (r"bus[- ]?off", int(pcb.PCAN_ERROR_BUSOFF)),
    (r"passive", int(pcb.PCAN_ERROR_BUSPASSIVE)),
    (r"heavy|warning", int(pcb.PCAN_ERROR_BUSHEAVY)),
    (r"light", int(pcb.PCAN_ERROR_BUSLIGHT)),
    (r"receive queue.*(late|overrun)|qoverrun", int(pcb.PCAN_ERROR_QOVERRUN)),
    (r"controller was read too late|\boverrun\b", int(pcb.PCAN_ERROR_OVERRUN)),
)


def map_pcan_exception(error: BaseException | str) -> PcanStatus:
    """Map a ``PcanCanOperationError`` (or its text) raised by python-can's ``recv``.

    The text is PCAN-Basic's error text, one line per error bit when it had to be assembled,
    or python-can's fallback naming the code in hex (``"(10h)"``), which is used when present.
    An unrecognised text is taken as fatal: the adapter should be reopened.
    """
    text = str(error)
    codes = [int(m, 16) for m in re.findall(r"\(([0-9A-Fa-f]+)h\)", text)]
    if codes:
        code = 0
        for c in codes:
            code |= c
        return map_pcan_status(code)
    lowered = text.lower()
    for name, value in ((n, int(v)) for v, n in pcb.PCAN_DICT_STATUS.items()):
        if re.search(rf"\b{re.escape(name.lower())}\b", lowered) and value:
            return map_pcan_status(value)
    code = 0
    for pattern, bit in _TEXT_HINTS:
        if re.search(pattern, lowered):
            code |= bit
    if code:
        return map_pcan_status(code)
    return PcanStatus(None, (), "down", (), None, True)


# PEAK error-frame ID (SJA1000 ECC error type) -> CAN_ERR_PROT type byte (data[2]).
_PEAK_TYPE_TO_PROT = {1: 0x01, 2: 0x02, 4: 0x04, 8: 0x00}
_PROT_TX = 0x80


def pcan_error_frames_to_socketcan(batch: FrameBatch) -> FrameBatch:
    """Rewrite the error frames of a PCAN batch from PEAK's layout to SocketCAN's.

    Only error rows change; the result is a new batch (the input is not modified).  A PEAK
    frame with ID 0 carries counters only (``CAN_ERR_CNT``); the others become
    ``CAN_ERR_PROT | CAN_ERR_BUSERROR | CAN_ERR_CNT`` with the type, direction and location.
    """
    rows = np.flatnonzero((batch.flags & FLAG_ERROR) != 0)
    out = batch.take(np.arange(len(batch)))  # a copy
    if rows.size == 0:
        return out
    peak_id = batch.can_id[rows]
    src = batch.data[rows, :8]
    lut = np.zeros(256, np.uint8)
    for peak, prot in _PEAK_TYPE_TO_PROT.items():
        lut[peak] = prot
    kind = lut[np.minimum(peak_id, 255)]
    protocol = peak_id != 0
    can_id = np.where(protocol, CAN_ERR_PROT | CAN_ERR_BUSERROR | CAN_ERR_CNT, CAN_ERR_CNT)
    data = np.zeros((rows.size, out.data.shape[1]), np.uint8)
    data[:, 2] = np.where(protocol, kind | np.where(src[:, 0] == 0, _PROT_TX, 0), 0)
    data[:, 3] = np.where(protocol, src[:, 1], 0)
    data[:, 6] = src[:, 3]  # TEC
    data[:, 7] = src[:, 2]  # REC
    out.can_id[rows] = can_id.astype(np.uint32)
    out.data[rows] = data
    out.dlc[rows] = 8
    return out
