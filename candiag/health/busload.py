"""Exact CAN bus load: bits on the wire per frame, vectorized, as ``canbusload -e`` counts them.

Owns the bit count of every frame (docs/bus-load.md).  Classic frames: ``47 + 8n + stuff`` bits
(11-bit id) and ``67 + 8n + stuff`` (29-bit id), where the stuff bits come from the real
bitstream SOF..data plus the CRC-15 (poly 0x4599) under the stuffing rule (after five equal
bits one complementary bit is inserted, and that bit starts the next run).  The constant
includes CRC delimiter, ACK slot, ACK delimiter, 7-bit EOF and the 3-bit interframe space.

Deliberate differences from can-utils ``canframelen.c``:

* **Remote frames carry no data bits.**  ``cfl_exact()`` adds ``8 x DLC`` for a remote frame
  although a remote frame has no data field on the wire (about 125 bits instead of about 48
  for DLC 8).  We count what the wire carries; the DLC field itself is the requested DLC.
* **CAN FD frames** use canbusload's no-stuffing FD formula,
  ``1 + (29|11) + (len >= 16 ? 21 : 17) + 5 + 12 + 8 * len``, because its exact mode returns 0
  for FD.  With BRS, the data phase ``1 + 1 + 4 + (21|17) + 8 * len`` runs at the data
  bitrate and is returned separately; the rest is at the nominal bitrate.

Error frames are not counted (canbusload never subscribes to them), so the load of a sick
bus is a lower bound: error and overload frames also occupy it.

Why our own code: canbusload is C and per frame; here all frames of a batch advance in lock
step through their bitstreams, vectorized across frames: the few odd header bits one bit
at a time, everything else a byte at a time through precomputed tables (a 256-entry CRC-15
table and an 8-state x 256-byte stuffing automaton).  That is about 25 numpy steps per id
format and batch, whatever the batch size, and no per-bit matrix in memory.
The tests compare it with a straightforward bit-by-bit version, ``tests/can_bitstream.py``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from candiag.ingest.frames import (
    FLAG_BRS,
    FLAG_ERROR,
    FLAG_EXTENDED,
    FLAG_FD,
    FLAG_REMOTE,
    FrameBatch,
)

CRC15_POLY = 0x4599
# CRC delimiter + ACK slot + ACK delimiter (3), EOF (7), interframe space (3).
TRAILER_BITS = 13
CRC_BITS = 15
SFF_HEADER_BITS = 19  # SOF, 11 id, RTR, IDE, r0, 4 DLC
EFF_HEADER_BITS = 39  # SOF, 11 id, SRR, IDE, 18 id, RTR, r1, r0, 4 DLC

I32 = npt.NDArray[np.int32]


def _crc15_table() -> npt.NDArray[np.uint16]:
    table = np.zeros(256, np.uint16)
    for byte in range(256):
        crc = byte << 7
        for _ in range(8):
            crc = ((crc << 1) ^ CRC15_POLY) if crc & 0x4000 else crc << 1
        table[byte] = crc & 0x7FFF
    return table


def _stuff_tables(width: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Bit stuffing as a state machine over ``width``-bit chunks (MSB first).

    State ``last * 4 + run - 1``: the level of the current run and its length 1..4 (a run of
    5 is stuffed at once, and the stuff bit, of the opposite level, starts a run of 1).
    ``next[state, chunk]`` is the state after the chunk, ``count[state, chunk]`` the stuff
    bits inserted in it.
    """
    nxt = np.zeros((8, 1 << width), np.uint8)
    count = np.zeros((8, 1 << width), np.uint8)
    for state in range(8):
        for chunk in range(1 << width):
            last, run, stuffed = state // 4, state % 4 + 1, 0
            for k in range(width - 1, -1, -1):
                bit = chunk >> k & 1
                run = run + 1 if bit == last else 1
                last = bit
                if run == 5:
                    stuffed += 1
                    last, run = 1 - bit, 1
            nxt[state, chunk] = last * 4 + run - 1
            count[state, chunk] = stuffed
    return nxt, count


_CRC_TABLE = _crc15_table()
# Flattened, indexed by ``state << width | chunk`` (np.take on a flat table is the fast gather).
_STUFF_NEXT_BYTE, _STUFF_COUNT_BYTE = (t.ravel() for t in _stuff_tables(8))
_STUFF_NEXT_BIT, _STUFF_COUNT_BIT = (t.ravel() for t in _stuff_tables(1))
_SOF_STATE = 0  # after SOF: a run of one dominant (0) bit


def _header_value(
    can_id: npt.NDArray[np.uint32],
    remote: npt.NDArray[np.bool_],
    dlc: npt.NDArray[np.uint8],
    extended: bool,
) -> npt.NDArray[np.uint64]:
    """SOF..DLC as an integer, first transmitted bit most significant."""
    ident = can_id.astype(np.uint64)
    tail = (remote.astype(np.uint64) << np.uint64(6)) | (dlc.astype(np.uint64) & np.uint64(0xF))
    if not extended:
        # SOF(0) ID10..ID0 RTR IDE(0) r0(0) DLC3..DLC0
        return (ident << np.uint64(7)) | tail
    # SOF(0) ID28..ID18 SRR(1) IDE(1) ID17..ID0 RTR r1(0) r0(0) DLC3..DLC0
    base = (ident >> np.uint64(18)) << np.uint64(27)
    ext = (ident & np.uint64(0x3FFFF)) << np.uint64(7)
    srr_ide = np.uint64(3 << 25)
    value: npt.NDArray[np.uint64] = np.bitwise_or(np.bitwise_or(base, ext), tail) | srr_ide
    return value


class _Stream:
    """CRC-15 and stuffing state of many frames, advanced bit- or byte-wise in lock step.

    Columns are sorted by descending payload length, so the frames still inside their data
    field at data byte ``k`` are a prefix ``[:active]``: slices, no masks.
    """

    def __init__(self, n: int) -> None:
        self.crc: npt.NDArray[np.uint16] = np.zeros(n, np.uint16)
        self.state = np.full(n, _SOF_STATE, np.uint8)
        self.stuffed = np.zeros(n, np.int32)

    def bit(self, bit: npt.NDArray[np.uint8], crc: bool = True) -> None:
        """One bit for every frame (SOF excluded: it only starts the first run)."""
        if crc:
            feedback = ((self.crc >> 14) ^ bit) & 1
            shifted = (self.crc << 1) & 0x7FFF
            self.crc = (shifted ^ (feedback * CRC15_POLY)).astype(np.uint16)
        index = (self.state << 1) | bit
        self.stuffed += np.take(_STUFF_COUNT_BIT, index)
        self.state = np.take(_STUFF_NEXT_BIT, index)

    def byte(
        self, byte: npt.NDArray[np.uint8], active: int | None = None, crc: bool = True
    ) -> None:
        """Eight bits (MSB first) for the first ``active`` frames (all when ``None``)."""
        sl = slice(None) if active is None else slice(0, active)
        if crc:
            c = self.crc[sl]
            self.crc[sl] = ((c << 8) & 0x7FFF) ^ np.take(_CRC_TABLE, ((c >> 7) ^ byte) & 0xFF)
        index = (self.state[sl].astype(np.uint16) << 8) | byte
        self.stuffed[sl] += np.take(_STUFF_COUNT_BYTE, index)
        self.state[sl] = np.take(_STUFF_NEXT_BYTE, index)


def _classic_bits(
    can_id: npt.NDArray[np.uint32],
    remote: npt.NDArray[np.bool_],
    dlc: npt.NDArray[np.uint8],
    data: npt.NDArray[np.uint8],
    extended: bool,
) -> I32:
    """Exact bits of classic frames sharing one id format.

    The frame is walked as SOF, the odd header bits one at a time, the rest of the header
    and the payload a byte at a time (19 and 39 header bits leave 3 and 7 odd bits, which
    byte-aligns the data field), then the CRC as one byte plus 7 bits.  CRC-15 runs over
    SOF..data; stuffing over SOF..CRC.
    """
    n = can_id.shape[0]
    n_bytes = np.where(remote, 0, np.minimum(dlc, 8)).astype(np.int32)
    order = np.argsort(-n_bytes, kind="stable")
    n_bytes, data = n_bytes[order], data[order]
    header = _header_value(can_id[order], remote[order], dlc[order], extended)
    header_len = EFF_HEADER_BITS if extended else SFF_HEADER_BITS
    odd = header_len % 8
    # SOF (a 0 bit) leaves the zero CRC register at zero and starts the first run: the walk
    # starts right after it.
    walk = _Stream(n)
    for k in range(header_len - 2, header_len - 1 - odd, -1):
        walk.bit(((header >> np.uint64(k)) & np.uint64(1)).astype(np.uint8))
    for k in range(header_len - odd - 8, -1, -8):
        walk.byte(((header >> np.uint64(k)) & np.uint64(0xFF)).astype(np.uint8))
    active = np.searchsorted(-n_bytes, -np.arange(8), side="left")
    for k in range(8):
        if active[k]:
            walk.byte(np.ascontiguousarray(data[: active[k], k]), int(active[k]))
    crc = walk.crc.copy()
    walk.byte((crc >> 7).astype(np.uint8), crc=False)
    for k in range(6, -1, -1):
        walk.bit(((crc >> k) & 1).astype(np.uint8), crc=False)
    out = np.empty(n, np.int32)
    out[order] = header_len + 8 * n_bytes + CRC_BITS + TRAILER_BITS + walk.stuffed
    return out


def fd_bits(length: npt.ArrayLike, extended: npt.ArrayLike, brs: npt.ArrayLike) -> tuple[I32, I32]:
    """canbusload's CAN FD formula: ``(nominal-rate bits, data-rate bits)`` per frame."""
    n_bytes = np.asarray(length, np.int32)
    crc = np.where(n_bytes >= 16, 21, 17)
    total = 1 + np.where(np.asarray(extended, bool), 29, 11) + crc + 5 + 12 + 8 * n_bytes
    data_phase = np.where(np.asarray(brs, bool), 1 + 1 + 4 + crc + 8 * n_bytes, 0)
    return (total - data_phase).astype(np.int32), data_phase.astype(np.int32)


def frame_bits(batch: FrameBatch) -> tuple[I32, I32]:
    """Bits each frame occupies: ``(nominal_bits, data_phase_bits)``, ``int32[n]`` each.

    ``data_phase_bits`` is non-zero only for CAN FD frames with BRS (bits at the data bitrate);
    error frames count 0.
    """
    n = len(batch)
    nominal = np.zeros(n, np.int32)
    data_phase = np.zeros(n, np.int32)
    flags = batch.flags
    error = (flags & FLAG_ERROR) != 0
    fd = ((flags & FLAG_FD) != 0) & ~error
    extended = (flags & FLAG_EXTENDED) != 0
    remote = (flags & FLAG_REMOTE) != 0
    for ext in (False, True):
        rows = np.flatnonzero(~error & ~fd & (extended == ext))
        if rows.size:
            nominal[rows] = _classic_bits(
                batch.can_id[rows], remote[rows], batch.dlc[rows], batch.data[rows, :8], ext
            )
    rows = np.flatnonzero(fd)
    if rows.size:
        nominal[rows], data_phase[rows] = fd_bits(
            batch.dlc[rows], extended[rows], (flags[rows] & FLAG_BRS) != 0
        )
    return nominal, data_phase


def load_ratio(
    bits: tuple[npt.ArrayLike, npt.ArrayLike] | npt.ArrayLike,
    bitrate: float,
    data_bitrate: float | None = None,
    seconds: float = 1.0,
) -> float:
    """Share of ``seconds`` the bus was busy (0..1, above 1 when the input is inconsistent).

    ``bits`` is ``(nominal_bits, data_phase_bits)`` as returned by :func:`frame_bits` (arrays or
    totals), or just nominal bits.  ``data_bitrate`` defaults to ``bitrate`` (as canbusload).
    """
    if bitrate <= 0 or seconds <= 0:
        raise ValueError("bitrate and seconds must be positive")
    if isinstance(bits, tuple):
        nominal, data_phase = float(np.sum(bits[0])), float(np.sum(bits[1]))
    else:
        nominal, data_phase = float(np.sum(np.asarray(bits))), 0.0
    busy = nominal / bitrate + data_phase / (data_bitrate or bitrate)
    return busy / seconds
