"""What the three parsing tiers share: the bytes of the line syntax, the lines of a chunk,
and the per-line result columns every tier fills.

A chunk is a ``uint8`` buffer of whole lines; line ``i`` is ``buf[starts[i]:ends[i]]``
(without its newline, and without a CR before it).  Each tier decodes some of the lines
into the same :class:`ChunkArrays` (one row per line, ``valid`` saying which rows hold a
frame), so the tiers can take lines in any order and the chunk becomes one
:class:`~candiag.ingest.frames.FrameBatch` at the end, in line order.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from candiag.ingest.frames import CLASSIC_WIDTH, FD_WIDTH, FrameBatch

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
Rows = npt.NDArray[np.intp]

# The bytes that delimit the fields of ``(seconds.fraction) channel id#data``.
OPEN, CLOSE, DOT, SPACE, HASH, NL, CR = (ord(c) for c in "(). #\n\r")
MAX_TEXT = 200  # characters of a malformed line kept for the report


class ChunkArrays:
    """Per-line output arrays of one chunk, filled by the parsing tiers."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.reset()

    def reset(self) -> None:
        n = self.n
        self.valid: npt.NDArray[np.bool_] = np.zeros(n, np.bool_)
        self.timestamp = np.zeros(n, np.float64)
        self.can_id = np.zeros(n, np.uint32)
        self.flags = np.zeros(n, np.uint8)
        self.dlc = np.zeros(n, np.uint8)
        self.data = np.zeros((n, CLASSIC_WIDTH), np.uint8)
        self.channel = np.zeros(n, np.int16)

    def widen(self) -> None:
        if self.data.shape[1] < FD_WIDTH:
            wide = np.zeros((self.data.shape[0], FD_WIDTH), np.uint8)
            wide[:, : self.data.shape[1]] = self.data
            self.data = wide

    def merge(self, rows: Rows, sub: ChunkArrays) -> None:
        """Copy ``sub`` (the results for ``rows``) into these arrays."""
        if sub.data.shape[1] > self.data.shape[1]:
            self.widen()
        self.valid[rows] = sub.valid
        self.timestamp[rows] = sub.timestamp
        self.can_id[rows] = sub.can_id
        self.flags[rows] = sub.flags
        self.dlc[rows] = sub.dlc
        self.data[rows, : sub.data.shape[1]] = sub.data
        self.channel[rows] = sub.channel

    def batch(self, channels: list[str]) -> FrameBatch:
        """The frames of the valid rows, in line order (no copy when every row is one)."""
        whole = FrameBatch(
            self.timestamp, self.can_id, self.flags, self.dlc, self.data, self.channel,
            list(channels),
        )  # fmt: skip
        return whole if self.valid.all() else whole.take(self.valid)


def line_bounds(buf: U8, nl: Rows) -> tuple[I64, I64]:
    """Start of every line and its end without the newline (and without a CR before it)."""
    n = len(nl)
    starts = np.empty(n, np.int64)
    ends = nl.astype(np.int64, copy=False)  # not modified in place: it may be the caller's
    if n:
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        before = ends - 1
        before[0] = max(before[0], 0)
        cr = buf[before] == CR
        if cr.any():
            ends = ends - (cr & (ends > starts))
    return starts, ends


def compact_lines(buf: U8, starts: I64, ends: I64) -> tuple[U8, I64, I64]:
    """The given lines alone, each ended by a newline, when that is much less than ``buf``.

    The shape-grouped tier makes whole-buffer passes; a few leftover lines of a big chunk
    should not cost a pass over the whole chunk each.
    """
    lengths = ends - starts + 1
    total = int(lengths.sum())
    if 4 * total > len(buf):
        return buf, starts, ends
    new_ends = np.cumsum(lengths) - 1
    new_starts = new_ends - lengths + 1
    if len(starts) <= 256:
        text = b"".join(
            buf[a:b].tobytes() + b"\n" for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
        )
        return np.frombuffer(text, np.uint8), new_starts, new_ends
    index = np.arange(total, dtype=np.int64) + np.repeat(starts - new_starts, lengths)
    compact = buf[index]
    compact[new_ends] = NL
    return compact, new_starts, new_ends
