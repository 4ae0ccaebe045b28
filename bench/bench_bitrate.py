"""Bitrate inference and the simulator's wire: throughput on a simulated capture.

Simulates the reference charger (``--modules``, default 60, at 1 Mbit/s, so that the bus
is busy and frames often wait for the wire) until ``--frames`` frames (default 1,000,000),
timing the simulator, whose every chunk now serializes its frames on the wire.  Then times
``BitrateEvidence.update`` over the capture in 65,536-frame chunks (as a capture is read)
and in one batch, and prints the inference.  Times are CPU time of this process (best of
``--repeat``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

from candiag.health.bitrate import BitrateEvidence
from candiag.ingest.frames import FrameBatch
from candiag.sim.charger import ChargerSimulator, SimConfig

clock = time.process_time
CHUNK = 65_536


def _best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = clock()
        fn()
        times.append(clock() - started)
    return min(times)


def _rate(label: str, n: int, seconds: float) -> None:
    print(f"{label:<48} {n / seconds:>14,.0f} frames/s   ({seconds * 1000:8.1f} ms for {n:,})")


def simulate(frames: int, modules: int, bitrate: int) -> FrameBatch:
    sim = ChargerSimulator(SimConfig(modules=modules, bitrate=bitrate))
    parts, total, k = [], 0, 0
    while total < frames:
        t0 = sim.start_time + 10.0 * k
        batch = sim.generate(t0, t0 + 10.0)
        parts.append(batch)
        total += len(batch)
        k += 1
    return FrameBatch.concat(parts).take(slice(0, frames))


def infer_chunked(batch: FrameBatch) -> BitrateEvidence:
    evidence = BitrateEvidence()
    for start in range(0, len(batch), CHUNK):
        evidence.update(batch.take(slice(start, start + CHUNK)))
    return evidence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_bitrate", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 frames, one repeat")
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modules", type=int, default=60)
    parser.add_argument("--bitrate", type=int, default=1_000_000)
    args, _ = parser.parse_known_args(argv)
    n = args.frames or (100_000 if args.quick else 1_000_000)
    repeat = 1 if args.quick else args.repeat

    started = clock()
    batch = simulate(n, args.modules, args.bitrate)
    _rate("simulator (frames serialized on the wire)", len(batch), clock() - started)
    span = float(batch.timestamp[-1] - batch.timestamp[0])
    print(f"capture: {len(batch):,} frames over {span:,.0f} s at {args.bitrate} bit/s")

    _rate(
        f"BitrateEvidence.update, {CHUNK:,}-frame chunks",
        len(batch),
        _best(lambda: infer_chunked(batch), repeat),
    )
    _rate(
        "BitrateEvidence.update, one batch",
        len(batch),
        _best(lambda: BitrateEvidence().update(batch), repeat),
    )
    result = infer_chunked(batch).result()
    print(f"inferred: {result.bitrate} ({result.reason})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
