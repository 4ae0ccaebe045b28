"""A CAN frame's bits, built one bit at a time in plain Python: the oracle for bus-load counts.

``candiag.health.busload`` counts the bits of whole batches with lookup tables, vectorized
(docs/bus-load.md).  This is the straightforward per-frame version the tests (and
``bench/bench_analyze.py``'s baseline) compare with: the real bitstream SOF..CRC, the CRC-15,
stuff bits after every run of five equal bits.  Slow by design; never on a live path.
"""

from __future__ import annotations

from candiag.health.busload import TRAILER_BITS, fd_bits

# ISO 11898-1 CRC-15 polynomial x^15 + x^14 + x^10 + x^8 + x^7 + x^4 + x^3 + 1 (can-utils uses
# the same, 0x4599); written out here so the oracle does not share the code's constant.
CRC15_POLY = 0x4599


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
    """One frame's ``(nominal_bits, data_phase_bits)``, bit by bit in plain Python."""
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
