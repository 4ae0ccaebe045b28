"""Signal rules (issue 15): what recording their evidence and judging it costs.

* **record**: CPU time of :class:`candiag.health.signals.SignalEvidence` folding an hour of
  the simulated reference charger (8 power modules, cooling, DC meter), decoded in 1-s
  batches as the daemon's loop hands them over: per second of traffic, and as a share of
  the whole per-batch pipeline (decode, health, nodes, signals, this recording included) on the same batches.
* **judge**: CPU time of one diagnosis step's work for these rules with a full hour
  remembered (the live bound): the evidence frozen into the timeline's fields and the
  three signal rules run over it, as the daemon does every second.
* **memory**: bytes the per-second series hold for that hour.

Times are process CPU time (``time.process_time``): on a shared machine wall time
measures the neighbours.  ``python -m bench.bench_signal_rules [--quick]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np

from candiag.decode.dbc import load_reference_database
from candiag.diagnosis.engine import load_rulebook
from candiag.diagnosis.signalrules import RULES
from candiag.diagnosis.timeline import BusTimeline
from candiag.health.pipeline import BusPipeline
from candiag.health.signalevidence import SignalEvidence
from candiag.sim.charger import ChargerSimulator, SimConfig
from candiag.sim.faults import Fault


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_signal_rules")
    parser.add_argument("--quick", action="store_true", help="10 minutes of traffic, not an hour")
    parser.add_argument("--frames", type=int, default=None, help="ignored (sized in time)")
    args = parser.parse_args(argv)
    seconds = 600.0 if args.quick else 3600.0
    db = load_reference_database()
    faults = (
        Fault("cooling_no_flow", seconds * 0.4, 30.0, {}),
        Fault("meter_reversed", seconds * 0.7, 20.0, {}),
    )
    sim = ChargerSimulator(SimConfig(faults=faults))
    pipeline = BusPipeline("can0", db)  # live: the last hour
    evidence = SignalEvidence(db)  # the same recording again, timed alone
    record = 0.0
    whole = 0.0
    frames = 0
    for batch in sim.chunks(seconds, chunk_seconds=1.0):
        frames += len(batch)
        started = time.process_time()
        result = pipeline.process(batch)
        whole += time.process_time() - started
        started = time.process_time()
        for message in result.messages.values():
            evidence.update(message)
        record += time.process_time() - started
    book = load_rulebook()
    end = float(pipeline.last_ts or 0.0)
    repeats = 5 if args.quick else 20
    started = time.process_time()
    for _ in range(repeats):
        timeline = BusTimeline(
            "can0",
            pipeline.first_ts,
            end,
            alarms=evidence.alarm_traces(end),
            series=evidence.role_series(),
        )
        found = [f for rule in RULES for f in rule.find(book, timeline)]
    judge = (time.process_time() - started) / repeats
    nbytes = sum(s.nbytes for s in evidence.series.values())
    print(f"traffic: {seconds:.0f} s, {frames:,} frames ({frames / seconds:,.0f} frames/s)")
    print(
        f"record: {record / seconds * 1e6:,.0f} us CPU per second of traffic "
        f"({record / max(whole, 1e-9):.1%} of the per-batch pipeline's {whole:.2f} s)"
    )
    print(f"judge (one diagnosis step, {seconds:.0f} s remembered): {judge * 1e3:.1f} ms CPU")
    print(f"series memory: {nbytes / 1e6:.2f} MB")
    print(f"findings: {sorted({f.code for f in found})}")
    assert np.isfinite(judge)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
