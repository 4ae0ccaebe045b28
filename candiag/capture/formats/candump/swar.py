"""Eight digits per ``uint64`` operation (SWAR: SIMD within a register), for both vectorized tiers.

A word holds eight digit *values* (0..9 or 0..15), right-aligned, the first digit in the
lowest byte (a little-endian load of the text).  Pairs, then pairs of pairs, are combined
in three multiply-add (decimal) or shift-or (hex) steps: the number of the eight digits,
for a whole array of words at once, ten times faster than a float matrix product.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Words = npt.NDArray[np.uint64]

# Every other byte, every other 16-bit and 32-bit half (also the byte masks of packing).
M8 = np.uint64(0x00FF00FF00FF00FF)
M16 = np.uint64(0x0000FFFF0000FFFF)
M32 = np.uint64(0x00000000FFFFFFFF)
_N8 = np.uint64(0x000F000F000F000F)
_N16 = np.uint64(0x000000FF000000FF)


def swar_decimal(x: Words) -> Words:
    """Value of eight right-aligned decimal digit values per word (first byte most significant)."""
    x = (x & M8) * np.uint64(10) + ((x >> np.uint64(8)) & M8)
    x = (x & M16) * np.uint64(100) + ((x >> np.uint64(16)) & M16)
    return (x & M32) * np.uint64(10_000) + (x >> np.uint64(32))


def swar_hex(v: Words) -> Words:
    """Value of eight right-aligned hex nibble values per word (first byte most significant)."""
    v = ((v & _N8) << np.uint64(4)) | ((v >> np.uint64(8)) & _N8)
    v = ((v & _N16) << np.uint64(8)) | ((v >> np.uint64(16)) & _N16)
    return ((v & np.uint64(0xFFFF)) << np.uint64(16)) | (v >> np.uint64(32))
