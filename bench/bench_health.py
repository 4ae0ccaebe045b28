"""Bus-health pipeline throughput: exact bus load, error classification, windows, id stats.

Builds a synthetic batch with numpy (70 % 29-bit / 30 % 11-bit ids, DLC 8, 0.1 % error
frames; ``--frames``, default 1,000,000) and times each stage over the whole batch (best of
``--repeat``), then the cost of one live-sized update (1,000 frames) of the windows and of
the whole pipeline, the windows' fixed memory and the cost of a window query.  Times are CPU
time of this process (best of ``--repeat``), so a busy machine does not distort them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

import numpy as np

from candiag.health.busload import frame_bits
from candiag.health.busstate import BusStateTracker
from candiag.health.errorframes import ErrorFrameSummary
from candiag.health.ids import IdStats
from candiag.health.windows import WINDOWS, BusWindows
from tests.synthetic import synthetic_batch

# CPU time of this process, not wall time: the figures stay meaningful on a shared machine
# (everything here is single-threaded numpy).
clock = time.process_time


def _best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = clock()
        fn()
        times.append(clock() - started)
    return min(times)


def _rate(label: str, n: int, seconds: float) -> None:
    print(f"{label:<44} {n / seconds:>14,.0f} frames/s   ({seconds * 1000:8.1f} ms for {n:,})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_health", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 frames, one repeat")
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    args, _ = parser.parse_known_args(argv)
    n = args.frames or (100_000 if args.quick else 1_000_000)
    repeat = 1 if args.quick else args.repeat

    started = time.perf_counter()
    batch = synthetic_batch(n, seed=1, rate_hz=3000.0, error_share=0.001)
    print(
        f"synthetic batch: {n:,} frames ({int(batch.is_error.sum()):,} error frames), "
        f"{(time.perf_counter() - started) * 1000:.0f} ms to build"
    )

    _rate("bus load (frame_bits, exact stuffing)", n, _best(lambda: frame_bits(batch), repeat))
    _rate(
        "error classification (summary)",
        n,
        _best(lambda: ErrorFrameSummary().update(batch), repeat),
    )
    flood = synthetic_batch(n, seed=2, rate_hz=3000.0, error_share=0.3)
    _rate(
        "error classification, 30 % error frames",
        n,
        _best(lambda: ErrorFrameSummary().update(flood), repeat),
    )
    _rate(
        "bus state tracker, 30 % error frames",
        n,
        _best(lambda: BusStateTracker().update(flood), repeat),
    )
    _rate("bus state tracker", n, _best(lambda: BusStateTracker().update(batch), repeat))
    bits = frame_bits(batch)
    _rate(
        "windows update (bits given)",
        n,
        _best(lambda: BusWindows(500_000).update(batch, bits), repeat),
    )
    _rate("id statistics", n, _best(lambda: IdStats().update(batch), repeat))

    # Live-sized batches: 1,000 frames each, in time order.
    size = 1000
    chunks = [batch.take(slice(i, i + size)) for i in range(0, min(n, 200 * size), size)]
    chunk_bits = [frame_bits(c) for c in chunks]
    windows = BusWindows(500_000)
    started = clock()
    for chunk, b in zip(chunks, chunk_bits, strict=True):
        windows.update(chunk, b)
    per_update = (clock() - started) / len(chunks)
    print(f"{'windows update per 1,000-frame batch':<44} {per_update * 1e6:>14,.0f} µs")

    errors, state, windows2, ids = (
        ErrorFrameSummary(),
        BusStateTracker(),
        BusWindows(500_000),
        IdStats(),
    )
    started = clock()
    for chunk in chunks:
        b = frame_bits(chunk)
        errors.update(chunk)
        off = state.update(chunk)
        windows2.update(chunk, b, off)
        ids.update(chunk)
    per_pipeline = (clock() - started) / len(chunks)
    print(
        f"{'whole pipeline per 1,000-frame batch':<44} {per_pipeline * 1e6:>14,.0f} µs "
        f"({size / per_pipeline:,.0f} frames/s)"
    )

    query = _best(lambda: windows.to_json(), max(repeat, 3))
    print(f"{'window query (all 4 windows, to_json)':<44} {query * 1e6:>14,.0f} µs")
    print(
        f"{'windows memory (fixed, nbytes)':<44} {windows.nbytes:>14,} bytes "
        f"({len(WINDOWS)} windows up to {max(WINDOWS.values())} s)"
    )
    print(f"{'id statistics memory':<44} {ids.nbytes:>14,} bytes for {len(ids)} ids")
    load = windows.load_ratio(10)
    print(
        f"{'check: 10 s load ratio of the stream':<44} {load:>14.3f}  (3000 frames/s, DLC 8, at "
        f"500 kbit/s)"
    )
    assert np.isfinite(load)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
