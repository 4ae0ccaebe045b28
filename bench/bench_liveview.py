"""The live view's raw per-id tracker and candump filters: frames per second over a batch.

Builds a synthetic batch with numpy (``tests/synthetic.py``: 70 % 29-bit / 30 % 11-bit ids,
DLC 8, 0.1 % error frames; ``--frames``, default 1,000,000) and times
:meth:`IdTracker.feed <candiag.tui.idtracker.IdTracker.feed>` over the whole batch and in
live-sized batches of 1,000 frames (what a 0.25 s refresh of a loaded 500 kbit/s bus
drains), one :meth:`snapshot`, and a three-filter candump ``--filter`` over the batch.
CPU time of this process, best of ``--repeat``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

from candiag.ingest.filters import parse_filters
from candiag.tui.idtracker import IdTracker
from tests.synthetic import synthetic_batch

clock = time.process_time
LIVE_BATCH = 1_000


def _best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = clock()
        fn()
        times.append(clock() - started)
    return min(times)


def _rate(label: str, n: int, seconds: float) -> None:
    print(f"{label:<48} {n / seconds:>14,.0f} frames/s   ({seconds * 1000:8.1f} ms for {n:,})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_liveview", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 frames, one repeat")
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    args, _ = parser.parse_known_args(argv)
    n = args.frames or (100_000 if args.quick else 1_000_000)
    repeat = 1 if args.quick else args.repeat
    batch = synthetic_batch(n, seed=3, rate_hz=3000.0, error_share=0.001)

    def whole() -> IdTracker:
        tracker = IdTracker()
        tracker.feed(batch)
        return tracker

    _rate("IdTracker.feed, one batch", n, _best(whole, repeat))

    def live() -> None:
        tracker = IdTracker()
        for start in range(0, n, LIVE_BATCH):
            tracker.feed(batch.take(slice(start, start + LIVE_BATCH)))

    _rate(f"IdTracker.feed, batches of {LIVE_BATCH:,}", n, _best(live, repeat))
    tracker = whole()
    seconds = _best(lambda: tracker.snapshot(float(batch.timestamp[-1])), repeat)
    print(f"{'IdTracker.snapshot':<48} {seconds * 1000:8.2f} ms for {len(tracker):,} ids")
    frame_filter = parse_filters(["any,0283F000:1FFFFF00,200:700,#FF", "123~7FF"])
    assert frame_filter is not None
    _rate(
        "--filter (2 groups, 3 id filters), keep()",
        n,
        _best(lambda: frame_filter.keep(batch), repeat),
    )
    return 0
