"""Request/response liveness: the tracker's record and the interval rules over an hour.

Simulates an hour of a protocol's polling (``--protocol``, default UUGreen: 100-ms polls, the
densest record; ``--quick``: 10 minutes), folds it into a :class:`BusPipeline` in 20,000-frame
batches, then times one evaluation of the liveness interval rules over the whole record (what
the daemon does once per diagnosis, over its last hour) and reports the record's size.  Times
are CPU time of this process (best of ``--repeat``), so a busy machine does not distort them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np

from candiag.decode.dbc import load_dbc_paths
from candiag.diagnosis.engine import load_rulebook
from candiag.diagnosis.timeline import BusTimeline
from candiag.health.pipeline import BusPipeline
from candiag.ingest.frames import FrameBatch
from candiag.liveness.intervals import liveness_faults
from candiag.sim.faults import parse_fault
from candiag.sim.protocols.engine import ProtocolSimConfig, ProtocolSimulator
from candiag.sim.protocols.packs import pack_path

clock = time.process_time
BATCH = 20_000


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_liveness", description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="uugreen")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args, _ = parser.parse_known_args(argv)
    seconds = 600.0 if args.quick else 3600.0
    faults = (parse_fault(f"module_silent@{seconds / 2}+5"),)
    sim = ProtocolSimulator(ProtocolSimConfig(args.protocol, faults=faults))
    batch = FrameBatch.concat(list(sim.chunks(seconds)))
    db = load_dbc_paths([pack_path(args.protocol)])
    book = load_rulebook()

    pipeline = BusPipeline("can0", db)
    started = clock()
    for lo in range(0, len(batch), BATCH):
        pipeline.process(batch.take(np.arange(lo, min(lo + BATCH, len(batch)))))
    ingest = clock() - started
    modules = pipeline.liveness.timeline()
    rows = sum(int(m.asked_t.size) for m in modules)
    nbytes = sum(
        m.asked_t.nbytes + m.latency_s.nbytes + m.second.nbytes + m.late_t.nbytes for m in modules
    )
    print(f"{args.protocol}: {len(batch):,} frames over {seconds:.0f} s, {len(modules)} modules")
    print(f"pipeline ingest (whole, record included)   {len(batch) / ingest:>12,.0f} frames/s")
    print(f"liveness record                            {rows:>12,} requests, {nbytes / 1e6:.1f} MB")

    timeline = BusTimeline("can0", float(batch.timestamp[0]), float(batch.timestamp[-1]))
    times = []
    for _ in range(args.repeat):
        started = clock()
        found = liveness_faults(book, _with_modules(timeline, pipeline))
        times.append(clock() - started)
    print(f"interval rules, one evaluation             {min(times) * 1000:>12.1f} ms "
          f"({len(found)} findings)")  # fmt: skip
    return 0


def _with_modules(timeline: BusTimeline, pipeline: BusPipeline) -> BusTimeline:
    """The timeline with the tracker's record, built as ``bus_timeline`` does (included)."""
    return BusTimeline(
        timeline.bus, timeline.start, timeline.end, modules=pipeline.liveness.timeline()
    )


if __name__ == "__main__":
    raise SystemExit(main())
