"""Synthetic frame batches built with numpy, for the tests and the benchmarks.

Builds :class:`~candiag.ingest.frames.FrameBatch` objects of a chosen size and mix (29-bit
and 11-bit ids, DLC 8, a share of error frames) without python-can messages, so a
million-frame batch takes milliseconds to build; and small batches from literal rows.
Imported as ``tests.synthetic`` by tests and by ``bench/`` (run from the repository root).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from candiag.ingest.frames import FLAG_ERROR, FLAG_EXTENDED, FLAG_REMOTE, FrameBatch


def synthetic_batch(
    n: int,
    *,
    seed: int = 0,
    start: float = 1_700_000_000.0,
    rate_hz: float = 2000.0,
    extended_share: float = 0.7,
    error_share: float = 0.001,
    remote_share: float = 0.0,
    channels: Sequence[str] = ("can0",),
) -> FrameBatch:
    """``n`` frames at about ``rate_hz``, sorted by time, with a realistic id mix.

    Extended ids look like charger power-module traffic (a few message types times 32 node
    addresses), standard ids like controller messages; error frames carry controller or
    protocol classes with TEC/REC.
    """
    rng = np.random.default_rng(seed)
    ts = start + np.cumsum(rng.exponential(1.0 / rate_hz, n))
    extended = rng.random(n) < extended_share
    ext_ids = np.array([0x0283F000, 0x0284F000, 0x0285F000], np.uint32)[
        rng.integers(0, 3, n)
    ] | rng.integers(0, 32, n).astype(np.uint32)
    std_ids = np.array([0x100, 0x181, 0x201, 0x301, 0x401, 0x7E5], np.uint32)[rng.integers(0, 6, n)]
    can_id = np.where(extended, ext_ids, std_ids).astype(np.uint32)
    flags = np.where(extended, FLAG_EXTENDED, 0).astype(np.uint8)
    dlc = np.full(n, 8, np.uint8)
    data = rng.integers(0, 256, (n, 8), dtype=np.uint8)
    remote = rng.random(n) < remote_share
    flags[remote] |= FLAG_REMOTE
    data[remote] = 0
    error = rng.random(n) < error_share
    err_classes = np.array([0x004 | 0x200, 0x008 | 0x080 | 0x200, 0x020, 0x040], np.uint32)
    can_id[error] = err_classes[rng.integers(0, 4, int(error.sum()))]
    flags[error] = FLAG_ERROR
    dlc[error] = 8
    data[error, 1] = 0x08
    data[error, 2] = 0x04
    data[error, 3] = 0x0A
    data[error, 6] = rng.integers(0, 140, int(error.sum()))
    data[error, 7] = 0
    channel = rng.integers(0, len(channels), n).astype(np.int16)
    return FrameBatch(ts, can_id, flags, dlc, data, channel, list(channels))


def frames(
    rows: Sequence[tuple[float, int, int, bytes]], channels: Sequence[str] = ("can0",)
) -> FrameBatch:
    """A small batch from ``(timestamp, can_id, flags, payload)`` rows (tests)."""
    n = len(rows)
    width = max([8, *(len(r[3]) for r in rows)])
    data = np.zeros((n, 64 if width > 8 else 8), np.uint8)
    for i, (_, _, _, payload) in enumerate(rows):
        data[i, : len(payload)] = np.frombuffer(payload, np.uint8)
    return FrameBatch(
        timestamp=np.array([r[0] for r in rows], np.float64),
        can_id=np.array([r[1] for r in rows], np.uint32),
        flags=np.array([r[2] for r in rows], np.uint8),
        dlc=np.array([len(r[3]) for r in rows], np.uint8),
        data=data,
        channel=np.zeros(n, np.int16),
        channels=list(channels),
    )
