"""candump ``-L`` text from frame batches: the formatter, nothing about files.

:func:`format_candump` writes what can-utils' ``candump -L`` writes (``lib.c``
``sprint_canframe``; docs/capture-formats.md): uppercase hex, microsecond timestamps,
error frames with ``CAN_ERR_FLAG`` and their class bits kept exactly (``20000040#...``),
which python-can's ``CanutilsLogWriter`` does not.  Classic data and error frames are
built as byte matrices per (channel, identifier width, length) group; remote and FD
frames, rare, line by line.  Files, rotation, gzip and durability are the writer's
(:mod:`candiag.capture.writer`).
"""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt

from candiag.capture.formats.candump.chunk import DOT, HASH, I64, NL, OPEN, U8
from candiag.ingest.frames import (
    CAN_ERR_FLAG,
    FLAG_BRS,
    FLAG_ERROR,
    FLAG_ESI,
    FLAG_EXTENDED,
    FLAG_FD,
    FLAG_REMOTE,
    FrameBatch,
)

_HEX_UPPER = np.frombuffer(b"0123456789ABCDEF", np.uint8)


def format_candump(batch: FrameBatch) -> bytes:
    """candump ``-L`` lines for ``batch`` (uppercase hex, microsecond timestamps).

    Classic data and error frames are formatted as byte matrices per (channel,
    id width, length) group; remote and FD frames (rare) line by line.
    """
    n = len(batch)
    if n == 0:
        return b""
    seconds, fraction = _split_timestamps(batch.timestamp)
    int_width = max(10, len(str(int(seconds.max())))) if n else 10
    is_error = batch.is_error
    id_width = np.where(batch.is_extended | is_error, 8, 3)
    raw_id = batch.can_id.astype(np.uint32) | np.where(is_error, CAN_ERR_FLAG, 0).astype(np.uint32)
    names = [channel_token(c) for c in batch.channels] or [b"can0"]
    odd = ((batch.flags & (FLAG_REMOTE | FLAG_FD)) != 0) & ~is_error
    odd |= seconds < 0
    name_len = np.array([len(c) for c in names], np.int64)[batch.channel]
    head = 1 + int_width + 1 + 6 + 1 + 1
    dlc = np.minimum(batch.dlc.astype(np.int64), batch.data.shape[1])
    lengths = head + name_len + 1 + id_width + 1 + 2 * dlc + 1
    odd_lines = {
        i: _format_odd(batch, i, names, int(seconds[i]), int(fraction[i]), int_width)
        for i in np.flatnonzero(odd).tolist()
    }
    for i, line in odd_lines.items():
        lengths[i] = len(line)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    out = np.empty(int(offsets[-1]), np.uint8)
    regular = np.flatnonzero(~odd)
    if len(regular):
        key = (batch.channel[regular].astype(np.int64) * 2 + (id_width[regular] == 8)) * 65 + dlc[
            regular
        ]
        for k in np.unique(key).tolist():
            rows = regular[key == k]
            ch, rem = divmod(k, 65 * 2)
            wide, nbytes = divmod(rem, 65)
            matrix = _format_group(
                seconds[rows], fraction[rows], int_width, names[ch], raw_id[rows],
                8 if wide else 3, batch.data[rows, :nbytes],
            )  # fmt: skip
            out[offsets[rows][:, None] + np.arange(matrix.shape[1])] = matrix
    for i, line in odd_lines.items():
        out[offsets[i] : offsets[i + 1]] = np.frombuffer(line, np.uint8)
    return out.tobytes()


def channel_token(name: str) -> bytes:
    """A channel name as one printable-ASCII token (python-can channels can be anything)."""
    token = re.sub(r"[^\x21-\x7e]", "_", str(name)).replace("#", "_").replace(")", "_")
    return (token or "can0").encode("ascii")


def _format_group(
    seconds: I64,
    fraction: I64,
    int_width: int,
    name: bytes,
    raw_id: npt.NDArray[np.uint32],
    id_width: int,
    data: U8,
) -> U8:
    """Lines of identical shape as a byte matrix."""
    rows, nbytes = data.shape
    parts: list[U8] = [
        np.full((rows, 1), OPEN, np.uint8),
        _decimal(seconds, int_width),
        np.full((rows, 1), DOT, np.uint8),
        _decimal(fraction, 6),
        np.frombuffer(b") " + name + b" ", np.uint8)[None, :].repeat(rows, axis=0),
        _HEX_UPPER[(raw_id[:, None] >> (4 * np.arange(id_width - 1, -1, -1))) & 0xF],
        np.full((rows, 1), HASH, np.uint8),
    ]
    if nbytes:
        hexdata = np.empty((rows, 2 * nbytes), np.uint8)
        hexdata[:, 0::2] = _HEX_UPPER[data >> 4]
        hexdata[:, 1::2] = _HEX_UPPER[data & 0xF]
        parts.append(hexdata)
    parts.append(np.full((rows, 1), NL, np.uint8))
    return np.concatenate(parts, axis=1)


def _decimal(values: I64, width: int) -> U8:
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((values[:, None] // powers) % 10 + ord("0")).astype(np.uint8)


def _split_timestamps(timestamp: npt.NDArray[np.float64]) -> tuple[I64, I64]:
    """Whole seconds and microseconds, rounded like ``%.6f``.

    The fraction is taken before scaling: ``ts * 1e6`` of an epoch timestamp has
    an error close to one microsecond unit, ``(ts - floor(ts)) * 1e6`` does not.
    """
    whole = np.floor(timestamp)
    micros = np.rint((timestamp - whole) * 1e6).astype(np.int64)
    seconds = whole.astype(np.int64)
    carry = micros >= 1_000_000
    return seconds + carry, micros - 1_000_000 * carry


def _format_odd(
    batch: FrameBatch, i: int, names: list[bytes], sec: int, frac: int, int_width: int
) -> bytes:
    sign = ""
    if sec < 0:  # not produced by candump; written so that nothing is silently dropped
        sign, total = "-", -(sec * 1_000_000 + frac)
        sec, frac = divmod(total, 1_000_000)
    flags = int(batch.flags[i])
    name = names[int(batch.channel[i])].decode()
    can_id = int(batch.can_id[i])
    ident = f"{can_id:08X}" if flags & FLAG_EXTENDED else f"{can_id:03X}"
    nbytes = int(batch.dlc[i])
    if flags & FLAG_ERROR:
        ident = f"{can_id | CAN_ERR_FLAG:08X}"
    if flags & FLAG_REMOTE and not flags & FLAG_ERROR:
        body = "R" + (f"{nbytes:X}" if nbytes else "")
    elif flags & FLAG_FD:
        fd_flags = (1 if flags & FLAG_BRS else 0) | (2 if flags & FLAG_ESI else 0)
        body = f"#{fd_flags:X}" + batch.data[i, :nbytes].tobytes().hex().upper()
    else:
        body = batch.data[i, :nbytes].tobytes().hex().upper()
    return f"({sign}{sec:0{int_width}d}.{frac:06d}) {name} {ident}#{body}\n".encode()
