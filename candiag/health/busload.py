"""Exact CAN bus load: bits on the wire per frame, vectorized, as ``canbusload -e`` counts them.

Owns the bit count of every frame (can-bus.md §3).  Classic frames: ``47 + 8n + stuff`` bits
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

Why our own code: canbusload is C and per frame; here the bitstreams of a whole batch are a
``uint8[bits, frames]`` matrix, the CRC is a loop over ~100 bit positions vectorized across
frames, and stuffing is one run-length pass over the same positions.
:func:`frame_bits_reference` is the straightforward per-frame version the tests compare with.
"""

from __future__ import annotations

import itertools

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


def _write_bits(
    stream: npt.NDArray[np.uint8], row: int, value: npt.NDArray[np.uint32], width: int
) -> int:
    """Write the ``width`` low bits of ``value`` MSB first into ``stream[row:row+width]``."""
    buf = np.empty_like(value)
    for k in range(width):
        np.right_shift(value, width - 1 - k, out=buf)
        np.bitwise_and(buf, 1, out=buf)
        stream[row + k] = buf
    return row + width


def _write_header(
    stream: npt.NDArray[np.uint8],
    can_id: npt.NDArray[np.uint32],
    remote: npt.NDArray[np.bool_],
    dlc: npt.NDArray[np.uint8],
    extended: bool,
) -> int:
    """Write SOF..DLC in transmission order into ``stream`` (zeroed); returns the header length."""
    row = 1  # SOF is dominant (0)
    if extended:
        row = _write_bits(stream, row, (can_id >> 18).astype(np.uint32), 11)
        stream[row : row + 2] = 1  # SRR, IDE recessive
        row = _write_bits(stream, row + 2, (can_id & 0x3FFFF).astype(np.uint32), 18)
        stream[row] = remote
        row += 3  # RTR, r1, r0
    else:
        row = _write_bits(stream, row, can_id, 11)
        stream[row] = remote
        row += 3  # RTR, IDE, r0
    return _write_bits(stream, row, dlc.astype(np.uint32), 4)


def _active_counts(length: I32, positions: int) -> list[int]:
    """For columns sorted by descending ``length``: how many are still active at each position."""
    return [int(c) for c in np.searchsorted(-length, -np.arange(positions), side="left")]


def _crc15(bits: npt.NDArray[np.uint8], length: I32) -> npt.NDArray[np.uint16]:
    """CRC-15 of each column's first ``length`` bits.

    ``bits`` is ``uint8[positions, n]`` with columns sorted by descending ``length``, so the
    columns still inside their bitstream at a position are a prefix: no masking needed.
    """
    n = bits.shape[1]
    crc = np.zeros(n, np.uint16)
    positions = int(length[0]) if n else 0
    feedback = np.empty(n, np.uint16)
    for p, active in enumerate(_active_counts(length, positions)):
        c, fb = crc[:active], feedback[:active]
        np.right_shift(c, 14, out=fb)
        fb ^= bits[p, :active]
        fb &= 1
        fb *= CRC15_POLY
        c <<= 1
        c &= 0x7FFF
        c ^= fb
    return crc


def _stuff_bits(bits: npt.NDArray[np.uint8], length: I32) -> I32:
    """Stuff bits inserted into each column's first ``length`` bits (columns sorted as for CRC)."""
    n = bits.shape[1]
    stuffed = np.zeros(n, np.int32)
    if n == 0:
        return stuffed
    last = bits[0].copy()
    run = np.ones(n, np.uint8)
    same = np.empty(n, np.bool_)
    stuff = np.empty(n, np.bool_)
    for p, active in enumerate(_active_counts(length, int(length[0]))):
        if p == 0:
            continue
        bit, lst, rn = bits[p, :active], last[:active], run[:active]
        np.equal(bit, lst, out=same[:active])
        rn *= same[:active]  # a change of level restarts the run ...
        rn += 1  # ... at 1
        lst[:] = bit
        np.equal(rn, 5, out=stuff[:active])
        if stuff[:active].any():
            st = stuff[:active]
            stuffed[:active] += st
            # The stuff bit is the complement of the run and is the first bit of the next run.
            lst ^= st
            rn -= st.astype(np.uint8) * 4
    return stuffed


def _classic_bits(
    can_id: npt.NDArray[np.uint32],
    remote: npt.NDArray[np.bool_],
    dlc: npt.NDArray[np.uint8],
    data: npt.NDArray[np.uint8],
    extended: bool,
) -> I32:
    """Exact bits of classic frames sharing one id format."""
    n = can_id.shape[0]
    # Longest bitstreams first: the CRC and stuffing loops then work on shrinking prefixes.
    n_data_bits = np.where(remote, 0, 8 * np.minimum(dlc, 8)).astype(np.int32)
    order = np.argsort(-n_data_bits, kind="stable")
    can_id, remote, dlc, data = can_id[order], remote[order], dlc[order], data[order]
    n_data_bits = n_data_bits[order]
    header_len = EFF_HEADER_BITS if extended else SFF_HEADER_BITS
    stream = np.zeros((header_len + 64 + CRC_BITS, n), np.uint8)
    _write_header(stream, can_id.astype(np.uint32), remote, dlc, extended)
    # unpackbits along axis 0 of the transposed payload gives MSB-first bits, byte by byte.
    stream[header_len : header_len + 64] = np.unpackbits(
        np.ascontiguousarray(data[:, :8].T), axis=0
    )
    crc_start = header_len + n_data_bits
    # Columns are grouped by payload length: clear bits beyond the data, then place the CRC.
    groups = np.flatnonzero(np.diff(n_data_bits, prepend=-1, append=-1))
    for lo, hi in itertools.pairwise(groups.tolist()):
        stream[int(crc_start[lo]) :, lo:hi] = 0
    crc = _crc15(stream, crc_start)
    for lo, hi in itertools.pairwise(groups.tolist()):
        at = int(crc_start[lo])
        _write_bits(stream[:, lo:hi], at, crc[lo:hi].astype(np.uint32), CRC_BITS)
    stuffed = _stuff_bits(stream, crc_start + CRC_BITS)
    out = np.empty(n, np.int32)
    out[order] = crc_start + CRC_BITS + TRAILER_BITS + stuffed
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
                batch.can_id[rows], remote[rows], batch.dlc[rows], batch.data[rows], ext
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


# -- reference ---------------------------------------------------------------------------


def frame_bits_reference(
    can_id: int,
    *,
    extended: bool,
    remote: bool = False,
    dlc: int = 0,
    data: bytes = b"",
    fd: bool = False,
    brs: bool = False,
    error: bool = False,
) -> tuple[int, int]:
    """One frame's ``(nominal_bits, data_phase_bits)``, bit by bit in plain Python (for tests)."""
    if error:
        return 0, 0
    if fd:
        nominal, data_phase = fd_bits([dlc], [extended], [brs])
        return int(nominal[0]), int(data_phase[0])
    _, stuffed = reference_bitstream(can_id, extended=extended, remote=remote, dlc=dlc, data=data)
    return len(stuffed) + TRAILER_BITS, 0


def reference_bitstream(
    can_id: int, *, extended: bool, remote: bool = False, dlc: int = 0, data: bytes = b""
) -> tuple[list[int], list[int]]:
    """A classic frame's bits SOF..CRC: ``(as built, as transmitted with stuff bits)``."""
    bits = [0]  # SOF
    if extended:
        bits += [(can_id >> i) & 1 for i in range(28, 17, -1)]
        bits += [1, 1]  # SRR, IDE
        bits += [(can_id >> i) & 1 for i in range(17, -1, -1)]
        bits += [int(remote), 0, 0]  # RTR, r1, r0
    else:
        bits += [(can_id >> i) & 1 for i in range(10, -1, -1)]
        bits += [int(remote), 0, 0]  # RTR, IDE, r0
    bits += [(dlc >> i) & 1 for i in range(3, -1, -1)]
    if not remote:
        for byte in data[: min(dlc, 8)]:
            bits += [(byte >> i) & 1 for i in range(7, -1, -1)]
    crc = 0
    for bit in bits:
        feedback = bit ^ ((crc >> 14) & 1)
        crc = (crc << 1) & 0x7FFF
        if feedback:
            crc ^= CRC15_POLY
    bits += [(crc >> i) & 1 for i in range(14, -1, -1)]
    wire: list[int] = []
    last, run = -1, 0
    for bit in bits:
        wire.append(bit)
        run = run + 1 if bit == last else 1
        last = bit
        if run == 5:
            wire.append(1 - bit)
            last, run = 1 - bit, 1
    return bits, wire
